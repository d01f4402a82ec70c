//! gRPC gets what HTTP offers for geography and statistics: radius searches, radius filters on
//! sensor and reading lists, statistics per group, time buckets and the location CSV import.
//! Each answer is checked against values this test computes itself and against the same
//! server's HTTP answer; bad input is refused naming the field, like over HTTP.

use audrey_proto::v1;
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::app::{GrpcApp, violations};

/// Berlin, Potsdam (~27 km from Berlin), Hamburg (~255 km), Munich (~504 km).
const PLACES: [(&str, f64, f64); 4] = [
    ("berlin", 52.52, 13.405),
    ("potsdam", 52.3906, 13.0645),
    ("hamburg", 53.5511, 9.9937),
    ("munich", 48.1351, 11.582),
];

/// Great-circle distance as `atan2(|a × b|, a · b)` of unit vectors (not the server's
/// haversine), on the mean-radius sphere.
fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let unit = |(latitude, longitude): (f64, f64)| {
        let (phi, lambda) = (latitude.to_radians(), longitude.to_radians());
        [
            phi.cos() * lambda.cos(),
            phi.cos() * lambda.sin(),
            phi.sin(),
        ]
    };
    let (u, v) = (unit(a), unit(b));
    let cross = [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ];
    let sine = (cross[0].powi(2) + cross[1].powi(2) + cross[2].powi(2)).sqrt();
    let cosine = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    sine.atan2(cosine) * 6371.0088
}

/// Registers the four places, one sensor `<place>-s` at each, and `values[i]` as readings of
/// every sensor, one hour apart starting at `start_ms`.
async fn seeded(app: &GrpcApp, start_ms: i64, values: &[f64]) {
    let mut registry = app.registry().await;
    for (id, latitude, longitude) in PLACES {
        registry
            .put_location(v1::PutLocationRequest {
                location: Some(v1::Location {
                    id: id.into(),
                    name: id.into(),
                    city: Some(id.into()),
                    country: Some("DE".into()),
                    latitude,
                    longitude,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        registry
            .put_sensor(v1::PutSensorRequest {
                sensor: Some(v1::Sensor {
                    id: format!("{id}-s"),
                    kind: "climate".into(),
                    location_id: id.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    let mut readings = Vec::new();
    for (place, (id, _, _)) in PLACES.iter().enumerate() {
        for (index, value) in values.iter().enumerate() {
            readings.push(v1::ReadingInput {
                sensor_id: format!("{id}-s"),
                read_time: Some(v1::reading_input::ReadTime::ReadAtMs(
                    start_ms + index as i64 * 3_600_000,
                )),
                // Each place's values are shifted so groups differ.
                values: [("temperature".to_string(), value + place as f64 * 10.0)].into(),
                message_id: format!("{id}-{index}"),
                ..Default::default()
            });
        }
    }
    let ack = app
        .ingest()
        .await
        .send_batch(v1::ReadingBatch {
            readings,
            atomic: true,
            batch_id: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.accepted as usize, PLACES.len() * values.len());
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{what}: {got} != {want}"
    );
}

fn fields(status: &tonic::Status) -> Vec<String> {
    violations(status)
        .into_iter()
        .map(|(field, _)| field)
        .collect()
}

/// 2024-01-01T00:00:00Z: readings sit in the past, inside the accepted window.
const START_MS: i64 = 1_704_067_200_000;

#[tokio::test]
async fn locations_near_answers_nearest_first_like_http_and_the_formula() {
    let app = GrpcApp::spawn().await;
    seeded(&app, START_MS, &[1.0]).await;
    let centre = (52.52, 13.405);
    let answer = app
        .registry()
        .await
        .locations_near(v1::LocationsNearRequest {
            lat: Some(centre.0),
            lon: Some(centre.1),
            radius_km: Some(300.0),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(String, f64)> = answer
        .items
        .iter()
        .map(|near| (near.location.clone().unwrap().id, near.distance_km))
        .collect();
    let mut expected: Vec<(String, f64)> = PLACES
        .iter()
        .map(|(id, lat, lon)| (id.to_string(), distance_km(centre, (*lat, *lon))))
        .filter(|(_, distance)| *distance <= 300.0)
        .collect();
    expected.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(
        got.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["berlin", "potsdam", "hamburg"]
    );
    for ((id, distance), (want_id, want)) in got.iter().zip(&expected) {
        assert_eq!(id, want_id);
        assert!((distance - want).abs() < 1e-6, "{id}: {distance} vs {want}");
    }
    let (status, http) = app
        .http_get("/api/v1/locations/near?lat=52.52&lon=13.405&radius_km=300")
        .await;
    assert_eq!(status, 200);
    let http: Vec<(String, f64)> = http["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["id"].as_str().unwrap().to_string(),
                item["distance_km"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, http);

    // A limit keeps the nearest.
    let one = app
        .registry()
        .await
        .locations_near(v1::LocationsNearRequest {
            lat: Some(centre.0),
            lon: Some(centre.1),
            radius_km: Some(300.0),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].location.as_ref().unwrap().id, "berlin");
    app.stop().await;
}

#[tokio::test]
async fn bad_radius_searches_are_refused_naming_the_field_like_http() {
    let app = GrpcApp::spawn().await;
    let mut registry = app.registry().await;
    let cases = [
        (
            (None, Some(13.0), Some(10.0), 0),
            "lat",
            "lon=13&radius_km=10",
        ),
        (
            (Some(95.0), Some(13.0), Some(10.0), 0),
            "lat",
            "lat=95&lon=13&radius_km=10",
        ),
        (
            (Some(52.0), Some(13.0), Some(0.0), 0),
            "radius_km",
            "lat=52&lon=13&radius_km=0",
        ),
        (
            (Some(52.0), Some(13.0), Some(10.0), 10_001),
            "limit",
            "lat=52&lon=13&radius_km=10&limit=10001",
        ),
    ];
    for ((lat, lon, radius_km, limit), field, query) in cases {
        let status = registry
            .locations_near(v1::LocationsNearRequest {
                lat,
                lon,
                radius_km,
                limit,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{query}");
        let grpc_fields = fields(&status);
        assert!(
            grpc_fields.contains(&field.to_string()),
            "{query}: {status:?}"
        );
        let (http_status, body) = app
            .http_get(&format!("/api/v1/locations/near?{query}"))
            .await;
        assert_eq!(http_status, 422);
        let http_fields: Vec<String> = body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|detail| detail["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(grpc_fields, http_fields, "{query}");
    }
    // A half-given filter on a list names what is missing.
    let status = registry
        .list_sensors(v1::ListSensorsRequest {
            near_lat: Some(52.0),
            near_lon: Some(13.0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["radius_km"]);
    let status = app
        .query()
        .await
        .list_readings(v1::ListReadingsRequest {
            near_lat: Some(91.0),
            near_lon: Some(13.0),
            radius_km: Some(5.0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["near_lat"]);
    app.stop().await;
}

#[tokio::test]
async fn radius_filters_on_sensor_and_reading_lists_keep_only_what_is_inside() {
    let app = GrpcApp::spawn().await;
    seeded(&app, START_MS, &[1.0, 2.0, 3.0]).await;
    // 50 km around Berlin holds Berlin and Potsdam, not Hamburg or Munich.
    let sensors = app
        .registry()
        .await
        .list_sensors(v1::ListSensorsRequest {
            near_lat: Some(52.52),
            near_lon: Some(13.405),
            radius_km: Some(50.0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = sensors.items.into_iter().map(|sensor| sensor.id).collect();
    ids.sort();
    assert_eq!(ids, ["berlin-s", "potsdam-s"]);

    let mut pages = app
        .query()
        .await
        .list_readings(v1::ListReadingsRequest {
            near_lat: Some(52.52),
            near_lon: Some(13.405),
            radius_km: Some(50.0),
            order: v1::Order::Oldest as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut readings = Vec::new();
    while let Some(page) = pages.next().await {
        readings.extend(page.unwrap().readings);
    }
    assert_eq!(readings.len(), 6);
    assert!(
        readings
            .iter()
            .all(|reading| ["berlin", "potsdam"].contains(&reading.location_id.as_str()))
    );
    let (_, http) = app
        .http_get("/api/v1/readings?near_lat=52.52&near_lon=13.405&radius_km=50&order=oldest")
        .await;
    let http_ids: Vec<&str> = http["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    let grpc_ids: Vec<&str> = readings.iter().map(|reading| reading.id.as_str()).collect();
    assert_eq!(grpc_ids, http_ids);
    app.stop().await;
}

/// Sample standard deviation and `percentile_cont`, computed here.
fn summary(values: &mut [f64], p: f64) -> (f64, f64, f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let stddev = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let rank = p / 100.0 * (n - 1.0);
    let (lower, upper) = (rank.floor() as usize, rank.ceil() as usize);
    let percentile = values[lower] + (values[upper] - values[lower]) * (rank - rank.floor());
    (
        values[0],
        values[values.len() - 1],
        mean,
        stddev,
        percentile,
    )
}

#[tokio::test]
async fn statistics_per_group_match_independent_values_and_http() {
    let app = GrpcApp::spawn().await;
    let values = [3.5, -1.0, 7.25, 2.0, 11.0];
    seeded(&app, START_MS, &values).await;
    let answer = app
        .query()
        .await
        .stats(v1::StatsRequest {
            metric: "temperature".into(),
            group_by: "location".into(),
            percentiles: vec![50.0, 90.0],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.group_by, "location");
    assert_eq!(answer.groups.len(), PLACES.len());
    for (place, (id, _, _)) in PLACES.iter().enumerate() {
        let group = answer
            .groups
            .iter()
            .find(|group| group.key.as_deref() == Some(*id))
            .unwrap();
        let mut shifted: Vec<f64> = values.iter().map(|v| v + place as f64 * 10.0).collect();
        let (min, max, mean, stddev, p90) = summary(&mut shifted, 90.0);
        assert_eq!(group.count, values.len() as u64);
        close(group.min, min, "min");
        close(group.max, max, "max");
        close(group.mean, mean, "mean");
        close(group.stddev.unwrap(), stddev, "stddev");
        assert_eq!(group.percentiles.len(), 2);
        close(group.percentiles[1].p, 90.0, "p");
        close(group.percentiles[1].value, p90, "p90");
    }
    // A time range narrows it: the first two hours only.
    let early = app
        .query()
        .await
        .stats(v1::StatsRequest {
            metric: "temperature".into(),
            from_ms: Some(START_MS),
            to_ms: Some(START_MS + 2 * 3_600_000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(early.group_by, "sensor");
    assert!(early.groups.iter().all(|group| group.count == 2));

    let (status, http) = app
        .http_get("/api/v1/stats?metric=temperature&group_by=location&percentiles=50,90")
        .await;
    assert_eq!(status, 200);
    let http_groups = http["groups"].as_array().unwrap();
    assert_eq!(http_groups.len(), answer.groups.len());
    for (grpc, http) in answer.groups.iter().zip(http_groups) {
        assert_eq!(grpc.key.as_deref(), http["key"].as_str());
        assert_eq!(Some(grpc.count), http["count"].as_u64());
        assert_eq!(Some(grpc.mean), http["mean"].as_f64());
        assert_eq!(grpc.stddev, http["stddev"].as_f64());
        assert_eq!(
            Some(grpc.percentiles[0].value),
            http["percentiles"]["p50"].as_f64()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn time_buckets_match_independent_values_and_http() {
    let app = GrpcApp::spawn().await;
    // Six readings an hour apart: 2-hour buckets hold pairs.
    let values = [1.0, 3.0, 10.0, 20.0, 5.0, 5.5];
    seeded(&app, START_MS, &values).await;
    let answer = app
        .query()
        .await
        .aggregate(v1::AggregateRequest {
            metric: "temperature".into(),
            bucket: "2h".into(),
            aggregations: vec!["avg".into(), "count".into(), "stddev".into(), "p50".into()],
            sensor_id: "berlin-s".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.bucket_ms, 7_200_000);
    assert_eq!(answer.buckets.len(), 3);
    for (index, bucket) in answer.buckets.iter().enumerate() {
        let pair = &values[index * 2..index * 2 + 2];
        assert_eq!(bucket.start_ms, START_MS + index as i64 * 7_200_000);
        let names: Vec<&str> = bucket
            .values
            .iter()
            .map(|value| value.aggregation.as_str())
            .collect();
        assert_eq!(names, ["avg", "count", "stddev", "p50"]);
        let mean = (pair[0] + pair[1]) / 2.0;
        close(bucket.values[0].value.unwrap(), mean, "avg");
        close(bucket.values[1].value.unwrap(), 2.0, "count");
        close(
            bucket.values[2].value.unwrap(),
            (pair[0] - pair[1]).abs() / 2f64.sqrt(),
            "stddev",
        );
        close(bucket.values[3].value.unwrap(), mean, "p50 of two");
    }
    let (status, http) = app
        .http_get(
            "/api/v1/readings/aggregate?metric=temperature&bucket=2h&agg=avg,count,stddev,p50&sensor=berlin-s",
        )
        .await;
    assert_eq!(status, 200);
    let http_buckets = http["buckets"].as_array().unwrap();
    assert_eq!(http_buckets.len(), answer.buckets.len());
    for (grpc, http) in answer.buckets.iter().zip(http_buckets) {
        assert_eq!(grpc.values[0].value, http["avg"].as_f64());
        assert_eq!(grpc.values[2].value, http["stddev"].as_f64());
    }
    // A one-value bucket has no stddev: the value is absent, not zero.
    let single = app
        .query()
        .await
        .aggregate(v1::AggregateRequest {
            metric: "temperature".into(),
            bucket: "1h".into(),
            aggregations: vec!["stddev".into()],
            location_id: "munich".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(single.buckets.len(), values.len());
    assert!(single.buckets.iter().all(|b| b.values[0].value.is_none()));
    app.stop().await;
}

#[tokio::test]
async fn bad_statistics_requests_are_refused_naming_the_field() {
    let app = GrpcApp::spawn().await;
    let mut query = app.query().await;
    let stats_cases = [
        (v1::StatsRequest::default(), "metric"),
        (
            v1::StatsRequest {
                metric: "t".into(),
                group_by: "planet".into(),
                ..Default::default()
            },
            "group_by",
        ),
        (
            v1::StatsRequest {
                metric: "t".into(),
                percentiles: vec![50.0, 101.0],
                ..Default::default()
            },
            "percentiles",
        ),
        (
            v1::StatsRequest {
                metric: "t".into(),
                percentiles: vec![f64::NAN],
                ..Default::default()
            },
            "percentiles",
        ),
        (
            v1::StatsRequest {
                metric: "t".into(),
                from_ms: Some(START_MS + 1),
                to_ms: Some(START_MS),
                ..Default::default()
            },
            "to",
        ),
    ];
    for (request, field) in stats_cases {
        let status = query.stats(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(fields(&status), [field], "{request:?}");
    }
    let aggregate_cases = [
        (
            v1::AggregateRequest {
                metric: "t".into(),
                ..Default::default()
            },
            "bucket",
        ),
        (
            v1::AggregateRequest {
                metric: "t".into(),
                bucket: "7w".into(),
                ..Default::default()
            },
            "bucket",
        ),
        (
            v1::AggregateRequest {
                metric: "t".into(),
                bucket: "1h".into(),
                aggregations: vec!["avg".into(), "median".into()],
                ..Default::default()
            },
            "aggregations[1]",
        ),
        (
            v1::AggregateRequest {
                metric: "t".into(),
                bucket: "1s".into(),
                from_ms: Some(946_684_800_000),
                to_ms: Some(START_MS),
                ..Default::default()
            },
            "bucket",
        ),
        (
            v1::AggregateRequest {
                metric: "t".into(),
                bucket: "1h".into(),
                sensor_id: "not a sensor id!".into(),
                ..Default::default()
            },
            "sensor_id",
        ),
    ];
    for (request, field) in aggregate_cases {
        let status = query.aggregate(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(fields(&status), [field], "{request:?}");
    }
    // Statistics need the read scope, as over HTTP.
    let (_, write_only) =
        audrey_server::create_token(&*app.store, "writer", &[audrey_server::Scope::Write], None)
            .unwrap();
    let status = app
        .query_as(&write_only)
        .await
        .stats(v1::StatsRequest {
            metric: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn a_locations_csv_is_imported_over_grpc_with_a_row_by_row_report() {
    let app = GrpcApp::spawn().await;
    let csv = "icao,name,latitude,longitude,tz\n\
               EDDB,Berlin Brandenburg,52.3667,13.5033,Europe/Berlin\n\
               EDDH,Hamburg,53.6304,9.9882,Europe/Berlin\n\
               XXXX,Nowhere,95.0,13.0,Europe/Berlin\n";
    let report = app
        .registry()
        .await
        .import_locations(v1::ImportLocationsRequest {
            csv: csv.as_bytes().to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(report.header);
    assert_eq!(
        (
            report.rows,
            report.inserted,
            report.updated,
            report.rejected
        ),
        (3, 2, 0, 1)
    );
    assert_eq!(report.rejections.len(), 1);
    assert_eq!(report.rejections[0].row, 3);
    assert_eq!(report.rejections[0].line, 4);
    assert_eq!(report.rejections[0].column, "latitude");
    let stored = app
        .registry()
        .await
        .get_location(v1::GetRequest { id: "EDDB".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.name, "Berlin Brandenburg");
    assert_eq!(stored.timezone, "Europe/Berlin");
    // The same file again changes nothing: the import is idempotent.
    let again = app
        .registry()
        .await
        .import_locations(v1::ImportLocationsRequest {
            csv: csv.as_bytes().to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.inserted, again.unchanged), (0, 2));
    // The HTTP import of the same file reports the same rejection.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/locations/import", app.http_url))
        .bearer_auth(&app.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let http: Value = response.json().await.unwrap();
    assert_eq!(http["rejections"][0]["column"], "latitude");
    assert_eq!(
        http["rejections"][0]["message"].as_str(),
        Some(report.rejections[0].message.as_str())
    );

    // Admin scope only.
    let (_, reader) =
        audrey_server::create_token(&*app.store, "reader", &[audrey_server::Scope::Read], None)
            .unwrap();
    let status = app
        .registry_as(Some(&reader))
        .await
        .import_locations(v1::ImportLocationsRequest {
            csv: csv.as_bytes().to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    app.stop().await;
}
