use std::sync::Arc;
use std::time::Duration;

use audrey_act::{ActOptions, Engine, ManualClock, RuleInput, SqliteActStore};
use audrey_ingest::{CommittedBatch, RejectedReading};
use audrey_model::{
    LocationId, LocationInput, MetricName, Millis, Reading, ReadingId, ReadingValues, SensorId,
    SensorInput,
};
use audrey_store::{SqliteOptions, SqliteStore, Store};

pub const START: Millis = Millis(1_800_000_000_000);

pub struct TestEngine {
    pub dir: tempfile::TempDir,
    pub registry: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub engine: Arc<Engine>,
    pub options: ActOptions,
}

impl TestEngine {
    /// A registry with location `hall` and `sensors` climate sensors `s0..`, interval 60 s.
    pub fn new(sensors: usize) -> TestEngine {
        TestEngine::with_options(sensors, ActOptions::default())
    }

    pub fn with_options(sensors: usize, options: ActOptions) -> TestEngine {
        let dir = tempfile::tempdir().unwrap();
        let registry: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let location: LocationInput = serde_json::from_value(serde_json::json!({
            "name": "Hall", "latitude": 52.0, "longitude": 13.0
        }))
        .unwrap();
        registry
            .put_location(
                &location
                    .into_location(LocationId::parse("hall").unwrap(), START, None)
                    .unwrap(),
                true,
            )
            .unwrap();
        for index in 0..sensors {
            let sensor: SensorInput = serde_json::from_value(serde_json::json!({
                "name": "climate", "kind": if index % 2 == 0 { "climate" } else { "gps" }, "location_id": "hall",
                "expected_interval_seconds": 60,
                "metrics": [{"name": "temperature", "unit": "C"}, {"name": "latitude", "unit": "deg"}]
            }))
            .unwrap();
            let id = SensorId::parse(&format!("s{index}")).unwrap();
            registry
                .put_sensor(&sensor.into_sensor(id, START, None).unwrap(), true)
                .unwrap();
        }
        let clock = Arc::new(ManualClock::new(START));
        let engine = open(&dir, &registry, &clock, &options);
        TestEngine {
            dir,
            registry,
            clock,
            engine,
            options,
        }
    }

    /// Opens a new engine over the same files, as after a restart.
    pub fn restart(&mut self) {
        self.engine = open(&self.dir, &self.registry, &self.clock, &self.options);
    }

    pub fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }

    pub fn rule(&self, json: serde_json::Value) -> String {
        let input: RuleInput = serde_json::from_value(json).unwrap();
        self.engine.create_rule(input).unwrap().id
    }

    pub fn send(&self, readings: &[Reading]) {
        self.engine
            .observe(&CommittedBatch {
                readings: readings.to_vec(),
                rejections: Vec::new(),
            })
            .unwrap();
    }

    /// Stores the readings (under their own ids) and hands them to the engine, as a commit does.
    pub fn store_and_send(&self, readings: &[Reading]) {
        self.store(readings);
        self.send(readings);
    }

    /// Stores the readings under their own ids without handing them to the engine: a commit
    /// whose evaluation a crash prevented.
    pub fn store(&self, readings: &[Reading]) {
        let batch = audrey_store::AppendBatch {
            readings: readings
                .iter()
                .map(|reading| audrey_model::ValidReading {
                    sensor_id: reading.sensor_id.clone(),
                    location_id: reading.location_id.clone(),
                    read_at: reading.read_at,
                    values: reading.values.clone(),
                    message_id: None,
                })
                .collect(),
            quarantine: Vec::new(),
            assigned_ids: Some(readings.iter().map(|reading| reading.id).collect()),
        };
        self.registry.append(batch, START).unwrap();
    }

    pub fn reject(&self, sensor: &str, count: usize) {
        let rejections = (0..count)
            .map(|_| RejectedReading {
                sensor_id: Some(sensor.to_string()),
                reason: "out_of_range".into(),
                received_at: self.clock_now(),
            })
            .collect();
        self.engine
            .observe(&CommittedBatch {
                readings: Vec::new(),
                rejections,
            })
            .unwrap();
    }

    pub fn clock_now(&self) -> Millis {
        use audrey_act::Clock;
        self.clock.now()
    }
}

fn open(
    dir: &tempfile::TempDir,
    registry: &Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    options: &ActOptions,
) -> Arc<Engine> {
    let store = Arc::new(SqliteActStore::open(dir.path()).unwrap());
    Engine::open(store, registry.clone(), clock.clone(), options.clone()).unwrap()
}

/// A reading of `sensor` measured `second` seconds after [`START`].
pub fn reading(sensor: &str, second: i64, metric: &str, value: f64) -> Reading {
    Reading {
        id: ReadingId(uuid::Uuid::now_v7()),
        sensor_id: SensorId::parse(sensor).unwrap(),
        location_id: LocationId::parse("hall").unwrap(),
        read_at: Millis(START.0 + second * 1000),
        received_at: START,
        values: ReadingValues(vec![(MetricName::parse(metric).unwrap(), value)]),
        message_id: None,
    }
}
