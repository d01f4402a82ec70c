//! Radius searches, checked against distances this test computes itself (as the angle
//! between unit vectors, not with the server's haversine formula).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_of, reading};
use crate::import::{airport_records, airports_file, expected_rejection, import};

const EARTH_RADIUS_KM: f64 = 6371.0088;

fn unit_vector(latitude: f64, longitude: f64) -> [f64; 3] {
    let (phi, lambda) = (latitude.to_radians(), longitude.to_radians());
    [
        phi.cos() * lambda.cos(),
        phi.cos() * lambda.sin(),
        phi.sin(),
    ]
}

/// Great-circle distance as `atan2(|a × b|, a · b)` on the mean-radius sphere.
fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (u, v) = (unit_vector(a.0, a.1), unit_vector(b.0, b.1));
    let cross = [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ];
    let sine = (cross[0].powi(2) + cross[1].powi(2) + cross[2].powi(2)).sqrt();
    let cosine = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    sine.atan2(cosine) * EARTH_RADIUS_KM
}

#[tokio::test]
async fn nearby_airports_match_distances_computed_independently() {
    let Some(path) = airports_file() else { return };
    let records = airport_records(&path);
    let app = TestApp::spawn().await;
    import(&app, std::fs::read(&path).unwrap()).await;
    let stored: Vec<(String, f64, f64)> = records
        .iter()
        .filter(|record| expected_rejection(record).is_none())
        .map(|r| (r[0].clone(), r[6].parse().unwrap(), r[7].parse().unwrap()))
        .collect();
    // Berlin; Fiji, whose circle crosses the antimeridian; Svalbard, near the pole.
    for (latitude, longitude, radius) in [
        (52.52, 13.40, 300.0),
        (-17.75, 179.5, 900.0),
        (78.2, 15.6, 1200.0),
    ] {
        let mut expected: Vec<(f64, String)> = stored
            .iter()
            .map(|(id, lat, lon)| (distance_km((latitude, longitude), (*lat, *lon)), id.clone()))
            .filter(|(distance, _)| *distance <= radius)
            .collect();
        assert!(
            stored.iter().all(|(_, lat, lon)| {
                (distance_km((latitude, longitude), (*lat, *lon)) - radius).abs() > 1e-6
            }),
            "no airport sits on the circle itself, so the answer is unambiguous"
        );
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        assert!(expected.len() > 3, "the circle holds airports");
        let body = app
            .get_json(&format!(
                "/api/v1/locations/near?lat={latitude}&lon={longitude}&radius_km={radius}&limit=10000"
            ))
            .await;
        let items = body["items"].as_array().unwrap();
        let got: Vec<&str> = items
            .iter()
            .map(|item| item["id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(got, want, "around {latitude},{longitude}");
        for (item, (distance, _)) in items.iter().zip(&expected) {
            assert!((item["distance_km"].as_f64().unwrap() - distance).abs() < 1e-6);
        }
        let limited = app
            .get_json(&format!(
                "/api/v1/locations/near?lat={latitude}&lon={longitude}&radius_km={radius}&limit=3"
            ))
            .await;
        let first: Vec<&str> = limited["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap())
            .collect();
        assert_eq!(first, want[..3]);
    }
    app.stop().await;
}

async fn put_place(app: &TestApp, id: &str, latitude: f64, longitude: f64) {
    let body = json!({"name": id, "latitude": latitude, "longitude": longitude});
    let response = app
        .send_json(
            reqwest::Method::PUT,
            &format!("/api/v1/locations/{id}"),
            &body,
        )
        .await;
    assert!(response.status().is_success());
}

async fn put_sensor_at(app: &TestApp, id: &str, location: &str) {
    let body = json!({"kind": "climate", "location_id": location});
    let response = app
        .send_json(
            reqwest::Method::PUT,
            &format!("/api/v1/sensors/{id}"),
            &body,
        )
        .await;
    assert!(response.status().is_success());
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    let mut ids: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn sensor_and_reading_lists_take_the_same_radius_filter() {
    let app = TestApp::spawn().await;
    // Potsdam is 27 km from Berlin's centre, Hamburg 255 km, Munich 504 km.
    put_place(&app, "potsdam", 52.3906, 13.0645).await;
    put_place(&app, "hamburg", 53.5511, 9.9937).await;
    put_place(&app, "munich", 48.1351, 11.5820).await;
    put_sensor_at(&app, "dev-potsdam", "potsdam").await;
    put_sensor_at(&app, "dev-hamburg", "hamburg").await;
    put_sensor_at(&app, "dev-munich", "munich").await;
    let mut batch = Vec::new();
    for seconds in 0..30 {
        for sensor in ["dev-potsdam", "dev-hamburg", "dev-munich"] {
            batch.push(reading(sensor, 60 + seconds, seconds as f64));
        }
    }
    assert_eq!(
        app.post_readings(&json!(batch)).await.status(),
        StatusCode::OK
    );
    let (berlin_lat, berlin_lon) = (52.52, 13.405);
    for (radius, expected) in [
        (30.0, vec!["dev-potsdam"]),
        (300.0, vec!["dev-hamburg", "dev-potsdam"]),
        (600.0, vec!["dev-hamburg", "dev-munich", "dev-potsdam"]),
    ] {
        let places = ["potsdam", "hamburg", "munich"];
        let coordinates = [(52.3906, 13.0645), (53.5511, 9.9937), (48.1351, 11.5820)];
        for (place, point) in places.iter().zip(coordinates) {
            let inside = distance_km((berlin_lat, berlin_lon), point) <= radius;
            assert_eq!(inside, expected.contains(&format!("dev-{place}").as_str()));
        }
        let filter = format!("near_lat={berlin_lat}&near_lon={berlin_lon}&radius_km={radius}");
        let sensors = app.get_json(&format!("/api/v1/sensors?{filter}")).await;
        assert_eq!(ids(&sensors, "id"), expected);
        let readings = app.all_readings(&format!("&{filter}")).await;
        assert_eq!(readings.len(), 30 * expected.len());
        let mut sensors_seen: Vec<String> = readings
            .iter()
            .map(|reading| reading["sensor_id"].as_str().unwrap().to_string())
            .collect();
        sensors_seen.sort();
        sensors_seen.dedup();
        assert_eq!(sensors_seen, expected);
    }
    let nothing = app
        .get_json("/api/v1/readings?near_lat=0&near_lon=0&radius_km=10")
        .await;
    assert_eq!(nothing["count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_radius_parameters_are_named() {
    let app = TestApp::spawn().await;
    let (status, error) = error_of(
        app.get("/api/v1/locations/near?lat=91&lon=abc&radius_km=-1")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|detail| detail["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["lon"]);
    let (_, error) = error_of(
        app.get("/api/v1/locations/near?lat=91&lon=0&radius_km=-1")
            .await,
    )
    .await;
    assert_eq!(error["details"][0]["path"], "lat");
    assert_eq!(error["details"][1]["path"], "radius_km");
    let (_, error) = error_of(app.get("/api/v1/locations/near?lat=1").await).await;
    assert_eq!(error["details"][0]["path"], "lon");
    assert_eq!(error["details"][0]["reason"], "missing_field");
    let (status, error) = error_of(app.get("/api/v1/sensors?near_lat=1&near_lon=2").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["details"][0]["path"], "radius_km");
    app.stop().await;
}
