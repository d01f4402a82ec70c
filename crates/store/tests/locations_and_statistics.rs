//! The import, radius and statistics methods of the `Store` trait, written against
//! `&dyn Store` so that every backend runs the same checks: SQLite, and PostgreSQL when
//! `AUDREY_TEST_POSTGRES_URL` names a server (a fresh database per test, as in the conformance
//! suite; a notice and a pass without it, a failure under `CI`). The last test loads the same
//! data into both backends and compares every answer.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "conformance/harness.rs"]
#[allow(dead_code)] // the conformance helpers this file does not need
mod harness;

use audrey_model::{
    GeoCircle, ImportKey, ImportRow, Location, LocationId, LocationInput, MetricName, Millis,
    ReadingValues, SensorId, SensorInput, ValidReading,
};
use audrey_store::{
    AggregateQuery, Aggregation, AppendBatch, GroupBy, Order, ReadingQuery, SensorFilter,
    SqliteOptions, SqliteStore, StatsQuery, Store, UpsertOutcome,
};

fn sqlite(dir: &std::path::Path) -> SqliteStore {
    // Flushes of at most 7 rows, so a few maintain() calls leave rows in both layouts.
    let options = SqliteOptions {
        flush_rows: 1,
        flush_max_rows: 7,
        ..Default::default()
    };
    SqliteStore::open(dir, options).unwrap()
}

fn place(id: &str, latitude: f64, longitude: f64, icao: Option<&str>, at: i64) -> Location {
    LocationInput {
        name: format!("Place {id}"),
        latitude,
        longitude,
        icao: icao.map(str::to_string),
        country: Some(if latitude > 50.0 { "DE" } else { "FR" }.to_string()),
        ..Default::default()
    }
    .into_location(LocationId::parse(id).unwrap(), Millis(at), None)
    .unwrap()
}

fn row(key: ImportKey, location: Location) -> ImportRow {
    ImportRow {
        row: 1,
        line: 2,
        key,
        location,
    }
}

fn upsert_is_keyed_by_id_or_code_and_reports_what_changed(store: &dyn Store) {
    let by_id = |location: Location| row(ImportKey::Id(location.id.clone()), location);
    let first = store
        .upsert_locations(&[
            by_id(place("a", 52.0, 13.0, None, 1)),
            by_id(place("b", 48.0, 2.0, Some("LFPG"), 1)),
        ])
        .unwrap();
    assert_eq!(first, [UpsertOutcome::Inserted, UpsertOutcome::Inserted]);
    let same = store
        .upsert_locations(&[by_id(place("a", 52.0, 13.0, None, 2))])
        .unwrap();
    assert_eq!(same, [UpsertOutcome::Unchanged]);
    let stored = store
        .location(&LocationId::parse("a").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.updated_at,
        Millis(1),
        "an unchanged row is not written"
    );

    let moved = store
        .upsert_locations(&[by_id(place("a", 52.5, 13.0, None, 3))])
        .unwrap();
    assert_eq!(moved, [UpsertOutcome::Updated]);
    let stored = store
        .location(&LocationId::parse("a").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.latitude, stored.created_at, stored.updated_at),
        (52.5, Millis(1), Millis(3))
    );

    // By code: "b" holds LFPG, so a row keyed by LFPG updates "b" and keeps its id.
    let renamed = Location {
        name: "Charles de Gaulle".into(),
        ..place("LFPG", 48.0, 2.0, Some("LFPG"), 4)
    };
    let outcome = store
        .upsert_locations(&[row(ImportKey::Icao("LFPG".into()), renamed)])
        .unwrap();
    assert_eq!(outcome, [UpsertOutcome::Updated]);
    let b = store
        .location(&LocationId::parse("b").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(b.name, "Charles de Gaulle");
    assert!(
        store
            .location(&LocationId::parse("LFPG").unwrap())
            .unwrap()
            .is_none()
    );

    // A soft-deleted record comes back with an import.
    store
        .delete_location(&LocationId::parse("a").unwrap(), Millis(5))
        .unwrap();
    let revived = store
        .upsert_locations(&[by_id(place("a", 52.5, 13.0, None, 6))])
        .unwrap();
    assert_eq!(revived, [UpsertOutcome::Updated]);
    let a = store
        .location(&LocationId::parse("a").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(a.deleted_at, None);
}

fn near_answers_nearest_first_and_skips_deleted(store: &dyn Store) {
    for (id, latitude, longitude) in [
        ("n-0", 0.0, 0.0),
        ("n-1", 0.0, 0.5),
        ("n-2", 0.0, 1.0),
        ("n-3", 0.0, 3.0),
        ("dateline-east", 0.0, 179.9),
        ("dateline-west", 0.0, -179.9),
    ] {
        store
            .put_location(&place(id, latitude, longitude, None, 1), true)
            .unwrap();
    }
    store
        .delete_location(&LocationId::parse("n-1").unwrap(), Millis(2))
        .unwrap();
    let circle = GeoCircle::new(0.0, 0.1, 150.0, ["lat", "lon", "radius_km"]).unwrap();
    let near = store.locations_near(&circle, 10).unwrap();
    let ids: Vec<&str> = near
        .iter()
        .map(|found| found.location.id.as_str())
        .collect();
    assert_eq!(ids, ["n-0", "n-2"]);
    assert!((near[0].distance_km - audrey_model::distance_km(0.0, 0.1, 0.0, 0.0)).abs() < 1e-9);
    assert_eq!(store.locations_near(&circle, 1).unwrap().len(), 1);
    let across = GeoCircle::new(0.0, 180.0, 50.0, ["lat", "lon", "radius_km"]).unwrap();
    let ids: Vec<String> = store
        .locations_near(&across, 10)
        .unwrap()
        .into_iter()
        .map(|found| found.location.id.to_string())
        .collect();
    assert_eq!(ids.len(), 2, "both sides of the antimeridian: {ids:?}");
}

fn register_sensors(store: &dyn Store) {
    store
        .put_location(&place("north", 55.0, 10.0, None, 1), false)
        .unwrap();
    store
        .put_location(&place("south", 45.0, 2.0, None, 1), false)
        .unwrap();
    for (sensor, location) in [("s-north", "north"), ("s-south", "south")] {
        let sensor = SensorInput {
            kind: "climate".into(),
            location_id: location.into(),
            ..Default::default()
        }
        .into_sensor(SensorId::parse(sensor).unwrap(), Millis(0), None)
        .unwrap();
        store.put_sensor(&sensor, false).unwrap();
    }
}

fn reading(sensor: &str, location: &str, read_at: i64, value: f64) -> ValidReading {
    ValidReading {
        sensor_id: SensorId::parse(sensor).unwrap(),
        location_id: LocationId::parse(location).unwrap(),
        read_at: Millis(read_at),
        values: ReadingValues(vec![(MetricName::parse("t").unwrap(), value)]),
        message_id: None,
    }
}

/// Values 1..=10 at north, appended in reverse time order; 100 and 200 at south. `flush`
/// runs between the two halves, so the first half can move to the indexed layout.
fn append_readings(store: &dyn Store, flush: impl Fn()) {
    let base = 1_700_000_000_000;
    let mut readings: Vec<ValidReading> = (1..=10)
        .rev()
        .map(|value| reading("s-north", "north", base + value * 60_000, value as f64))
        .collect();
    readings.push(reading("s-south", "south", base, 100.0));
    readings.push(reading("s-south", "south", base + 3_600_000, 200.0));
    let (first, second) = readings.split_at(6);
    for (index, part) in [first, second].into_iter().enumerate() {
        if index == 1 {
            flush();
        }
        store
            .append(
                AppendBatch {
                    readings: part.to_vec(),
                    ..Default::default()
                },
                Millis(base + 10_000_000),
            )
            .unwrap();
    }
}

fn statistics_follow_the_documented_definitions(store: &dyn Store) {
    let query = StatsQuery {
        metric: MetricName::parse("t").unwrap(),
        group_by: GroupBy::Country,
        from: None,
        to: None,
        percentiles: vec![50.0, 90.0],
    };
    let groups = store.reading_stats(&query).unwrap();
    let keys: Vec<Option<&str>> = groups.iter().map(|group| group.key.as_deref()).collect();
    assert_eq!(keys, [Some("DE"), Some("FR")]);
    let north = &groups[0].summary;
    assert_eq!(
        (north.count, north.min, north.max, north.mean),
        (10, 1.0, 10.0, 5.5)
    );
    // Sample stddev of 1..=10 is sqrt(55/6); percentile_cont(0.5) = 5.5, (0.9) = 9.1.
    assert!((north.stddev.unwrap() - (55.0f64 / 6.0).sqrt()).abs() < 1e-12);
    assert_eq!(north.percentiles[0], (50.0, 5.5));
    assert!((north.percentiles[1].1 - 9.1).abs() < 1e-12);
    let south = &groups[1].summary;
    assert_eq!((south.count, south.mean), (2, 150.0));

    // Without percentiles (SQLite answers whole chunks from their summaries): the same.
    let plain = store
        .reading_stats(&StatsQuery {
            percentiles: vec![],
            ..query.clone()
        })
        .unwrap();
    assert_eq!(plain.len(), 2);
    for (plain, exact) in plain.iter().zip(&groups) {
        assert_eq!(plain.key, exact.key);
        let (left, right) = (&plain.summary, &exact.summary);
        assert_eq!(
            (left.count, left.min, left.max, left.mean, left.stddev),
            (right.count, right.min, right.max, right.mean, right.stddev)
        );
        assert!(left.percentiles.is_empty());
    }
    // A range that cuts the north readings (4..=10 are inside) and keeps south's second.
    let base = 1_700_000_000_000i64;
    let cut = store
        .reading_stats(&StatsQuery {
            from: Some(Millis(base + 3 * 60_000 + 1)),
            percentiles: vec![],
            ..query.clone()
        })
        .unwrap();
    let counted: Vec<(Option<&str>, u64, f64, f64, f64)> = cut
        .iter()
        .map(|group| {
            let summary = &group.summary;
            let key = group.key.as_deref();
            (key, summary.count, summary.min, summary.max, summary.mean)
        })
        .collect();
    assert_eq!(
        counted,
        [
            (Some("DE"), 7, 4.0, 10.0, 7.0),
            (Some("FR"), 1, 200.0, 200.0, 200.0)
        ]
    );
    assert!((cut[0].summary.stddev.unwrap() - (28.0f64 / 6.0).sqrt()).abs() < 1e-12);

    let missing = store
        .reading_stats(&StatsQuery {
            metric: MetricName::parse("humidity").unwrap(),
            ..query
        })
        .unwrap();
    assert!(missing.is_empty(), "no group has the metric");
}

fn buckets_are_epoch_aligned_and_ordered(store: &dyn Store) {
    let base = 1_700_000_000_000i64;
    let query = AggregateQuery {
        sensor: Some(SensorId::parse("s-north").unwrap()),
        location: None,
        metric: MetricName::parse("t").unwrap(),
        bucket_ms: 300_000,
        aggregations: vec![
            Aggregation::Count,
            Aggregation::Min,
            Aggregation::Percentile(50.0),
        ],
        from: None,
        to: None,
    };
    let buckets = store.aggregate_readings(&query).unwrap();
    let mut expected: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for value in 1..=10i64 {
        let read_at = base + value * 60_000;
        expected
            .entry(read_at - read_at.rem_euclid(300_000))
            .or_default()
            .push(value as f64);
    }
    assert_eq!(buckets.len(), expected.len());
    for (bucket, (start, values)) in buckets.iter().zip(expected) {
        assert_eq!(bucket.start, Millis(start));
        assert_eq!(bucket.values[0], Some(values.len() as f64));
        assert_eq!(bucket.values[1], Some(values[0]));
    }
    // Whole hours without percentiles (SQLite: from chunk summaries): 1..=10 share one hour.
    let hourly = store
        .aggregate_readings(&AggregateQuery {
            bucket_ms: 3_600_000,
            aggregations: vec![
                Aggregation::Count,
                Aggregation::Sum,
                Aggregation::Avg,
                Aggregation::Min,
                Aggregation::Max,
            ],
            ..query
        })
        .unwrap();
    assert_eq!(hourly.len(), 1);
    assert_eq!(hourly[0].start, Millis(base - base.rem_euclid(3_600_000)));
    let values: Vec<f64> = hourly[0]
        .values
        .iter()
        .map(|value| value.unwrap())
        .collect();
    assert_eq!((values[0], values[3], values[4]), (10.0, 1.0, 10.0));
    assert!((values[1] - 55.0).abs() < 1e-9 && (values[2] - 5.5).abs() < 1e-9);
}

/// A reading that arrives late (read long before the ones already stored, received after
/// the statistics were first asked for) changes the next answer: nothing is cached stale.
fn a_late_reading_changes_statistics_and_buckets(store: &dyn Store) {
    let base = 1_700_000_000_000i64;
    let query = StatsQuery {
        metric: MetricName::parse("t").unwrap(),
        group_by: GroupBy::Sensor,
        from: Some(Millis(base - 3_600_000)),
        to: Some(Millis(base + 3_600_000)),
        percentiles: vec![50.0],
    };
    let before = store.reading_stats(&query).unwrap();
    let north = |groups: &[audrey_store::StatsGroup]| {
        groups
            .iter()
            .find(|group| group.key.as_deref() == Some("s-north"))
            .unwrap()
            .summary
            .clone()
    };
    assert_eq!(north(&before).count, 10);
    store
        .append(
            AppendBatch {
                readings: vec![reading("s-north", "north", base - 1_800_000, 1000.0)],
                ..Default::default()
            },
            Millis(base + 20_000_000),
        )
        .unwrap();
    let after = north(&store.reading_stats(&query).unwrap());
    assert_eq!((after.count, after.max), (11, 1000.0));
    assert_eq!(after.percentiles, vec![(50.0, 6.0)]);
    let buckets = store
        .aggregate_readings(&AggregateQuery {
            sensor: Some(SensorId::parse("s-north").unwrap()),
            location: None,
            metric: MetricName::parse("t").unwrap(),
            bucket_ms: 3_600_000,
            aggregations: vec![Aggregation::Count, Aggregation::Max],
            from: None,
            to: None,
        })
        .unwrap();
    let late = base - 1_800_000;
    let start = late - late.rem_euclid(3_600_000);
    let bucket = buckets
        .iter()
        .find(|bucket| bucket.start == Millis(start))
        .unwrap();
    assert_eq!(
        bucket.values[1],
        Some(1000.0),
        "the late reading's bucket has it"
    );
}

#[test]
fn sqlite_upserts_imported_locations() {
    let dir = tempfile::tempdir().unwrap();
    upsert_is_keyed_by_id_or_code_and_reports_what_changed(&sqlite(dir.path()));
}

#[test]
fn sqlite_finds_locations_near_a_point() {
    let dir = tempfile::tempdir().unwrap();
    near_answers_nearest_first_and_skips_deleted(&sqlite(dir.path()));
}

#[test]
fn sqlite_statistics_cover_landed_and_flushed_readings() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path());
    register_sensors(&store);
    append_readings(&store, || store.maintain().unwrap());
    let landed = store.landed_rows();
    assert!(
        landed > 0 && landed < 12,
        "{landed} rows landed: both layouts hold some"
    );
    statistics_follow_the_documented_definitions(&store);
    buckets_are_epoch_aligned_and_ordered(&store);
    a_late_reading_changes_statistics_and_buckets(&store);
}

#[test]
fn postgres_upserts_imported_locations() {
    let Some(harness) = harness::postgres() else {
        return;
    };
    upsert_is_keyed_by_id_or_code_and_reports_what_changed(&*harness.store);
}

#[test]
fn postgres_finds_locations_near_a_point() {
    let Some(harness) = harness::postgres() else {
        return;
    };
    near_answers_nearest_first_and_skips_deleted(&*harness.store);
}

#[test]
fn postgres_statistics_follow_the_documented_definitions() {
    let Some(harness) = harness::postgres() else {
        return;
    };
    let store = &*harness.store;
    register_sensors(store);
    append_readings(store, || harness.settle());
    statistics_follow_the_documented_definitions(store);
    buckets_are_epoch_aligned_and_ordered(store);
    a_late_reading_changes_statistics_and_buckets(store);
}

/// Loads one data set into `store`: places with attributes, cities (one without), sensors,
/// and readings over three days with awkward values (large offsets, negatives, a metric some
/// readings lack), under fixed ids so both backends hold the very same readings.
fn load_comparison_data(store: &dyn Store, flush: impl Fn()) {
    let places = [
        ("berlin", 52.52, 13.40, Some("Berlin"), "DE"),
        ("potsdam", 52.39, 13.06, Some("Potsdam"), "DE"),
        ("paris", 48.86, 2.35, Some("Paris"), "FR"),
        ("versailles", 48.80, 2.13, None, "FR"),
        ("fiji", -17.7, 179.99, None, "FJ"),
        ("samoa", -17.7, -179.99, Some("Apia"), "WS"),
    ];
    let mut rows = Vec::new();
    for (index, (id, latitude, longitude, city, country)) in places.into_iter().enumerate() {
        let mut attributes = serde_json::Map::new();
        attributes.insert("rank".into(), serde_json::json!(index));
        attributes.insert("tags".into(), serde_json::json!(["a", {"b": 1.5}]));
        let location = LocationInput {
            name: format!("Place {id}"),
            latitude,
            longitude,
            city: city.map(str::to_string),
            country: Some(country.into()),
            attributes: Some(attributes),
            ..Default::default()
        }
        .into_location(LocationId::parse(id).unwrap(), Millis(1), None)
        .unwrap();
        rows.push(row(ImportKey::Id(location.id.clone()), location));
    }
    let outcomes = store.upsert_locations(&rows).unwrap();
    assert!(
        outcomes
            .iter()
            .all(|outcome| *outcome == UpsertOutcome::Inserted)
    );
    assert!(
        store
            .upsert_locations(&rows)
            .unwrap()
            .iter()
            .all(|outcome| *outcome == UpsertOutcome::Unchanged),
        "attributes read back equal to what was written"
    );
    for (sensor, location) in [
        ("s-berlin", "berlin"),
        ("s-potsdam", "potsdam"),
        ("s-paris", "paris"),
        ("s-versailles", "versailles"),
        ("s-fiji", "fiji"),
        ("s-samoa", "samoa"),
    ] {
        let sensor = SensorInput {
            kind: "climate".into(),
            location_id: location.into(),
            ..Default::default()
        }
        .into_sensor(SensorId::parse(sensor).unwrap(), Millis(0), None)
        .unwrap();
        store.put_sensor(&sensor, false).unwrap();
    }
    let base = 1_700_000_000_000i64;
    let sensors = [
        "s-berlin",
        "s-potsdam",
        "s-paris",
        "s-versailles",
        "s-fiji",
        "s-samoa",
    ];
    let mut readings = Vec::new();
    for step in 0..600i64 {
        let sensor = sensors[(step % 6) as usize];
        let location = sensor.trim_start_matches("s-");
        // Deterministic but irregular values around a large offset.
        let value = 1.0e6 + ((step * 7919) % 1000) as f64 * 0.37 - (step % 13) as f64 * 101.3;
        let mut values = vec![(MetricName::parse("t").unwrap(), value)];
        if step % 5 != 0 {
            values.push((MetricName::parse("u").unwrap(), -(step as f64) / 7.0));
        }
        values.sort_by(|left, right| left.0.as_str().cmp(right.0.as_str()));
        readings.push(ValidReading {
            sensor_id: SensorId::parse(sensor).unwrap(),
            location_id: LocationId::parse(location).unwrap(),
            read_at: Millis(base + step * 431_000),
            values: ReadingValues(values),
            message_id: None,
        });
    }
    for (index, part) in readings.chunks(150).enumerate() {
        let assigned_ids = (0..part.len())
            .map(|offset| {
                let number = (index * 150 + offset) as u128 + 1;
                audrey_model::ReadingId(uuid::Uuid::from_u128(
                    0x0188_0000_0000_7000_8000_0000_0000_0000 | number,
                ))
            })
            .collect();
        store
            .append(
                AppendBatch {
                    readings: part.to_vec(),
                    assigned_ids: Some(assigned_ids),
                    ..Default::default()
                },
                Millis(base + 400 * 86_400_000),
            )
            .unwrap();
        if index % 2 == 0 {
            flush();
        }
    }
}

fn close(left: f64, right: f64) -> bool {
    left == right || (left - right).abs() <= 1e-9 * left.abs().max(right.abs()).max(1.0)
}

#[test]
fn sqlite_and_postgres_answer_the_same() {
    let Some(harness) = harness::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lite = sqlite(dir.path());
    let pg = &*harness.store;
    load_comparison_data(&lite, || lite.maintain().unwrap());
    load_comparison_data(pg, || harness.settle());

    for id in ["berlin", "versailles", "fiji"] {
        let id = LocationId::parse(id).unwrap();
        assert_eq!(lite.location(&id).unwrap(), pg.location(&id).unwrap());
    }

    let circles = [
        GeoCircle::new(52.45, 13.2, 30.0, ["lat", "lon", "radius_km"]).unwrap(),
        GeoCircle::new(48.8, 2.2, 1000.0, ["lat", "lon", "radius_km"]).unwrap(),
        GeoCircle::new(-17.7, 180.0, 10.0, ["lat", "lon", "radius_km"]).unwrap(),
        GeoCircle::new(0.0, 0.0, 1.0, ["lat", "lon", "radius_km"]).unwrap(),
    ];
    for circle in &circles {
        let near = lite.locations_near(circle, 10).unwrap();
        assert_eq!(near, pg.locations_near(circle, 10).unwrap(), "{circle:?}");
        let query = ReadingQuery {
            near: Some(*circle),
            order: Order::Oldest,
            limit: 10_000,
            ..Default::default()
        };
        let lite_readings = lite.readings(&query).unwrap().items;
        let pg_readings = pg.readings(&query).unwrap().items;
        assert_eq!(lite_readings.len(), pg_readings.len(), "{circle:?}");
        for (left, right) in lite_readings.iter().zip(&pg_readings) {
            assert_eq!(left, right, "{circle:?}");
        }
        let filter = SensorFilter {
            near: Some(*circle),
            limit: 100,
            ..Default::default()
        };
        let lite_sensors = lite.sensors(&filter).unwrap().items;
        assert_eq!(
            lite_sensors,
            pg.sensors(&filter).unwrap().items,
            "{circle:?}"
        );
        if near.is_empty() {
            assert!(lite_readings.is_empty() && lite_sensors.is_empty());
        }
    }

    let base = 1_700_000_000_000i64;
    for group_by in [
        GroupBy::Sensor,
        GroupBy::Location,
        GroupBy::City,
        GroupBy::Country,
    ] {
        for (metric, from, to) in [
            ("t", None, None),
            ("u", Some(base + 3_600_000), Some(base + 86_400_000)),
            ("none", None, None),
        ] {
            let query = StatsQuery {
                metric: MetricName::parse(metric).unwrap(),
                group_by,
                from: from.map(Millis),
                to: to.map(Millis),
                percentiles: vec![0.0, 25.0, 50.0, 90.0, 99.9, 100.0],
            };
            let lite_groups = lite.reading_stats(&query).unwrap();
            let pg_groups = pg.reading_stats(&query).unwrap();
            let keys = |groups: &[audrey_store::StatsGroup]| {
                groups
                    .iter()
                    .map(|group| group.key.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(keys(&lite_groups), keys(&pg_groups), "{query:?}");
            assert_eq!(metric == "none", lite_groups.is_empty());
            for (left, right) in lite_groups.iter().zip(&pg_groups) {
                let (left, right) = (&left.summary, &right.summary);
                assert_eq!(
                    (left.count, left.min, left.max),
                    (right.count, right.min, right.max)
                );
                assert!(close(left.mean, right.mean), "{left:?} vs {right:?}");
                assert_eq!(left.stddev.is_some(), right.stddev.is_some());
                if let (Some(l), Some(r)) = (left.stddev, right.stddev) {
                    assert!(close(l, r), "{left:?} vs {right:?}");
                }
                assert_eq!(left.percentiles.len(), right.percentiles.len());
                for (l, r) in left.percentiles.iter().zip(&right.percentiles) {
                    assert!(l.0 == r.0 && close(l.1, r.1), "{left:?} vs {right:?}");
                }
            }
        }
    }

    let every = vec![
        Aggregation::Percentile(99.0),
        Aggregation::Count,
        Aggregation::Sum,
        Aggregation::Avg,
        Aggregation::Percentile(50.0),
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::Stddev,
    ];
    for (sensor, location, bucket_ms) in [
        (None, None, 3_600_000),
        (Some("s-paris"), None, 86_400_000),
        (None, Some("fiji"), 600_000),
        (Some("s-berlin"), None, 1_000),
    ] {
        let query = AggregateQuery {
            sensor: sensor.map(|id| SensorId::parse(id).unwrap()),
            location: location.map(|id| LocationId::parse(id).unwrap()),
            metric: MetricName::parse("u").unwrap(),
            bucket_ms,
            aggregations: every.clone(),
            from: Some(Millis(base + 1)),
            to: None,
        };
        let lite_buckets = lite.aggregate_readings(&query).unwrap();
        let pg_buckets = pg.aggregate_readings(&query).unwrap();
        assert!(!lite_buckets.is_empty());
        assert_eq!(lite_buckets.len(), pg_buckets.len(), "{query:?}");
        for (left, right) in lite_buckets.iter().zip(&pg_buckets) {
            assert_eq!(left.start, right.start);
            assert_eq!(left.values.len(), every.len());
            for (l, r) in left.values.iter().zip(&right.values) {
                match (l, r) {
                    (Some(l), Some(r)) => assert!(close(*l, *r), "{left:?} vs {right:?}"),
                    (None, None) => {}
                    _ => panic!("null differs: {left:?} vs {right:?}"),
                }
            }
        }
    }
}
