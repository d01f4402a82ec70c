use audrey_act::CommandStatus;

use super::helpers::TestEngine;

#[tokio::test]
async fn a_command_queued_while_offline_is_delivered_on_connect_and_never_when_stale() {
    let mut test = TestEngine::new(1);
    let fresh = test
        .engine
        .create_command("s0", "fan_on", serde_json::json!({"speed": 2}), 600)
        .unwrap();
    let stale = test
        .engine
        .create_command("s0", "reboot", serde_json::Value::Null, 10)
        .unwrap();
    let later = test
        .engine
        .create_command("s0", "fan_off", serde_json::Value::Null, 600)
        .unwrap();
    assert_eq!(fresh.status, CommandStatus::Queued);
    test.advance(11);
    test.restart();
    let mut session = test.engine.connect_device("s0").unwrap();
    let first = session.commands.recv().await.unwrap();
    let second = session.commands.recv().await.unwrap();
    assert_eq!(
        (first.id.as_str(), second.id.as_str()),
        (fresh.id.as_str(), later.id.as_str()),
        "in creation order, stale one skipped"
    );
    assert_eq!(
        test.engine.command(&stale.id).unwrap().status,
        CommandStatus::Expired
    );
    test.engine.command_delivered("s0", &first.id).unwrap();
    let done = test
        .engine
        .command_result("s0", &first.id, true, Some("fan at 2".into()))
        .unwrap();
    assert_eq!(done.status, CommandStatus::Succeeded);
    assert!(
        test.engine.cancel_command(&first.id).is_err(),
        "a finished command cannot be cancelled"
    );
    assert_eq!(
        test.engine.cancel_command(&later.id).unwrap().status,
        CommandStatus::Cancelled
    );
}

#[tokio::test]
async fn a_rule_action_issues_a_command_to_the_connected_device() {
    let test = TestEngine::new(1);
    test.rule(serde_json::json!({
        "scope": {"type": "sensor", "id": "s0"}, "metric": "temperature", "condition": ">", "threshold": 30,
        "for_seconds": 300, "severity": "major",
        "action": {"name": "fan_on", "payload": {"speed": 3}, "ttl_seconds": 60}
    }));
    let mut session = test.engine.connect_device("s0").unwrap();
    test.send(&[
        super::helpers::reading("s0", 0, "temperature", 31.0),
        super::helpers::reading("s0", 300, "temperature", 31.0),
    ]);
    let command = session.commands.recv().await.unwrap();
    assert_eq!(command.name, "fan_on");
    assert_eq!(command.payload, serde_json::json!({"speed": 3}));
    assert!(command.alert_id.is_some());
}
