use audrey_proto::v1;
use tonic::Code;

use crate::app::{GrpcApp, violations};

fn location(id: &str) -> v1::Location {
    v1::Location {
        id: id.into(),
        name: "Depot".into(),
        city: Some("Oslo".into()),
        country: Some("NO".into()),
        latitude: 59.9,
        longitude: 10.7,
        timezone: "Europe/Oslo".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn locations_are_created_replaced_patched_listed_and_soft_deleted() {
    let app = GrpcApp::spawn().await;
    let mut registry = app.registry().await;
    let created = registry
        .create_location(v1::PutLocationRequest {
            location: Some(location("depot")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (created.name.as_str(), created.timezone.as_str()),
        ("Depot", "Europe/Oslo")
    );
    let status = registry
        .create_location(v1::PutLocationRequest {
            location: Some(location("depot")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let replaced = registry
        .put_location(v1::PutLocationRequest {
            location: Some(location("depot")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!replaced.created);
    assert_eq!(
        replaced.location.unwrap().created_at_ms,
        created.created_at_ms
    );
    let patch = v1::PatchLocationRequest {
        location: Some(v1::Location {
            id: "depot".into(),
            name: "Depot 2".into(),
            ..Default::default()
        }),
        update_mask: vec!["name".into(), "city".into()],
    };
    let patched = registry.patch_location(patch).await.unwrap().into_inner();
    assert_eq!(
        (
            patched.name.as_str(),
            patched.city.as_deref(),
            patched.country.as_deref()
        ),
        ("Depot 2", None, Some("NO"))
    );
    let listed = registry
        .list_locations(v1::ListLocationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items.len(), 1);
    registry
        .delete_location(v1::DeleteRequest { id: "depot".into() })
        .await
        .unwrap();
    let listed = registry
        .list_locations(v1::ListLocationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.items.is_empty());
    let deleted = registry
        .get_location(v1::GetRequest { id: "depot".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted_at_ms.is_some());
    app.stop().await;
}

#[tokio::test]
async fn invalid_registry_input_is_invalid_argument_with_fields_and_conflicts_are_refused() {
    let app = GrpcApp::spawn().await;
    let mut registry = app.registry().await;
    let bad = v1::Location {
        id: "x".into(),
        name: "".into(),
        latitude: 95.0,
        longitude: 0.0,
        timezone: "Mars/Base".into(),
        ..Default::default()
    };
    let status = registry
        .put_location(v1::PutLocationRequest {
            location: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&status)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    assert_eq!(fields, ["name", "latitude", "timezone"]);
    let orphan = v1::Sensor {
        id: "dev-9".into(),
        kind: "climate".into(),
        location_id: "nowhere".into(),
        ..Default::default()
    };
    let status = registry
        .put_sensor(v1::PutSensorRequest {
            sensor: Some(orphan),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&status)[0].0, "location_id");
    app.register("dev-1", "site-a").await;
    let status = registry
        .delete_location(v1::DeleteRequest {
            id: "site-a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::AlreadyExists,
        "a location with sensors cannot be deleted"
    );
    let status = registry
        .get_sensor(v1::GetRequest { id: "ghost".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let bad_mask = v1::PatchSensorRequest {
        sensor: Some(v1::Sensor {
            id: "dev-1".into(),
            kind: "x".into(),
            location_id: "site-a".into(),
            ..Default::default()
        }),
        update_mask: vec!["colour".into()],
    };
    let status = registry.patch_sensor(bad_mask).await.unwrap_err();
    assert_eq!(violations(&status)[0].0, "update_mask[0]");
    let listed = registry
        .list_sensors(v1::ListSensorsRequest {
            location_id: "site-a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items.len(), 1);
    app.stop().await;
}
