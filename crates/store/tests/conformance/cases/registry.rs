//! Locations, sensors and tokens: CRUD, conflicts, soft delete, the sensor cache.

use audrey_model::{ErrorCode, LocationId, Millis, SensorId};
use audrey_store::{LocationFilter, SensorFilter, StoreError, StoredToken};

use crate::harness::{Harness, location, sensor};

pub fn locations_are_created_replaced_listed_and_soft_deleted(harness: &Harness) {
    let store = &*harness.store;
    location(store, "berlin", "DE");
    location(store, "paris", "FR");
    location(store, "aachen", "DE");
    let mut berlin = store
        .location(&LocationId::parse("berlin").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(berlin.country.as_deref(), Some("DE"));
    assert!(matches!(
        store.put_location(&berlin, true),
        Err(StoreError::Conflict(_))
    ));
    berlin.name = "Berlin Mitte".into();
    berlin.updated_at = Millis(5);
    assert!(
        !store.put_location(&berlin, false).unwrap(),
        "a replace is not new"
    );
    let stored = store.location(&berlin.id).unwrap().unwrap();
    assert_eq!(stored.name, "Berlin Mitte");
    assert_eq!(stored.created_at, Millis(0), "a replace keeps created_at");

    let german = store
        .locations(&LocationFilter {
            country: Some("DE".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<String> = german.items.iter().map(|l| l.id.to_string()).collect();
    assert_eq!(ids, ["aachen", "berlin"]);

    let first = store
        .locations(&LocationFilter {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let second = store
        .locations(&LocationFilter {
            limit: 2,
            after: first.next_cursor.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].id.as_str(), "paris");
    assert!(second.next_cursor.is_none());

    store.delete_location(&berlin.id, Millis(9)).unwrap();
    assert!(matches!(
        store.delete_location(&berlin.id, Millis(10)),
        Err(StoreError::NotFound(_))
    ));
    let live = store
        .locations(&LocationFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(live.items.len(), 2, "a deleted location is hidden");
    let all = store
        .locations(&LocationFilter {
            limit: 10,
            include_deleted: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.items.len(), 3);
    let deleted = store.location(&berlin.id).unwrap().unwrap();
    assert_eq!(deleted.deleted_at, Some(Millis(9)));
}

pub fn sensors_need_a_live_location_and_are_soft_deleted(harness: &Harness) {
    let store = &*harness.store;
    location(store, "lab", "DE");
    let mut orphan = audrey_model::SensorInput {
        kind: "climate".into(),
        location_id: "nowhere".into(),
        ..Default::default()
    }
    .into_sensor(SensorId::parse("s1").unwrap(), Millis(0), None)
    .unwrap();
    match store.put_sensor(&orphan, true) {
        Err(error @ StoreError::Invalid(_)) => assert_eq!(error.code(), ErrorCode::Invalid),
        other => panic!("expected an invalid location, got {other:?}"),
    }
    orphan.location_id = LocationId::parse("lab").unwrap();
    assert!(store.put_sensor(&orphan, true).unwrap(), "created");
    assert!(matches!(
        store.put_sensor(&orphan, true),
        Err(StoreError::Conflict(_))
    ));
    sensor(store, "s2", "lab");
    assert!(
        store.cached_sensor("s1").is_some(),
        "the cache follows writes"
    );

    let lab = LocationId::parse("lab").unwrap();
    match store.delete_location(&lab, Millis(3)) {
        Err(StoreError::Conflict(message)) => assert!(message.contains("2 sensor")),
        other => panic!("a location with sensors must not be deleted: {other:?}"),
    }
    let s1 = SensorId::parse("s1").unwrap();
    store.delete_sensor(&s1, Millis(4)).unwrap();
    assert_eq!(
        store.cached_sensor("s1").unwrap().deleted_at,
        Some(Millis(4)),
        "the cache sees the soft delete"
    );
    assert!(matches!(
        store.delete_sensor(&s1, Millis(5)),
        Err(StoreError::NotFound(_))
    ));
    let listed = store
        .sensors(&SensorFilter {
            location: Some("lab".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<&str> = listed.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s2"]);
    let with_deleted = store
        .sensors(&SensorFilter {
            include_deleted: true,
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(with_deleted.items[0].id.as_str(), "s1");
    assert_eq!(with_deleted.next_cursor.as_deref(), Some("s1"));
    store
        .delete_sensor(&SensorId::parse("s2").unwrap(), Millis(6))
        .unwrap();
    store.delete_location(&lab, Millis(7)).unwrap();
}

pub fn tokens_are_stored_found_and_revoked(harness: &Harness) {
    let store = &*harness.store;
    let token = StoredToken {
        id: "t1".into(),
        hash: "hash-1".into(),
        name: "writer".into(),
        scopes: vec!["write".into(), "read".into()],
        sensor_id: Some("s1".into()),
        created_at: Millis(1),
        revoked_at: None,
    };
    store.put_token(&token).unwrap();
    store
        .put_token(&StoredToken {
            id: "t2".into(),
            hash: "hash-2".into(),
            scopes: vec!["admin".into()],
            sensor_id: None,
            created_at: Millis(2),
            ..token.clone()
        })
        .unwrap();
    assert_eq!(store.token_by_hash("hash-1").unwrap().unwrap(), token);
    assert!(store.token_by_hash("nope").unwrap().is_none());
    let ids: Vec<String> = store.tokens().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["t1", "t2"]);
    store.revoke_token("t1", Millis(8)).unwrap();
    assert_eq!(
        store.token_by_hash("hash-1").unwrap().unwrap().revoked_at,
        Some(Millis(8))
    );
    assert!(matches!(
        store.revoke_token("t1", Millis(9)),
        Err(StoreError::NotFound(_))
    ));
}
