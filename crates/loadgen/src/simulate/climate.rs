//! The simulated climate sensors and the readings they produce.
//!
//! Each sensor follows its location's day: temperature peaks mid-afternoon local time and
//! bottoms out before dawn, relative humidity moves the other way, pressure (reduced to sea
//! level, as weather stations report it, so altitude never pushes it out of range) drifts slowly,
//! and the battery drains until it is "replaced". On top comes a small share of deliberate faults
//! that a real fleet produces and the server must handle: a glitched value out of range, a clock
//! running ten minutes ahead, and a resend of an earlier message.
//!
//! Everything is driven by one seeded generator, so a seed reproduces the same fleet and values.

use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::simulate::places::SimulatedLocation;
use crate::wire::MetricBody;

pub const SENSOR_KIND: &str = "climate";

/// What every simulated sensor declares; the server rejects anything outside these bounds.
pub const CLIMATE_METRICS: [MetricBody; 4] = [
    MetricBody {
        name: "temperature",
        unit: "C",
        min: -40.0,
        max: 85.0,
    },
    MetricBody {
        name: "humidity",
        unit: "%",
        min: 0.0,
        max: 100.0,
    },
    MetricBody {
        name: "pressure",
        unit: "hPa",
        min: 870.0,
        max: 1085.0,
    },
    MetricBody {
        name: "battery",
        unit: "%",
        min: 0.0,
        max: 100.0,
    },
];

/// About one reading in two hundred is a fault.
pub const FAULT_PROBABILITY: f64 = 0.005;
/// Beyond the server's five minutes of tolerated clock skew.
const FUTURE_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
const STANDARD_SEA_LEVEL_PRESSURE: f64 = 1013.25;
/// Below this a battery is swapped for a fresh one.
const BATTERY_REPLACED_BELOW: f64 = 5.0;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClimateValues {
    pub temperature: f64,
    pub humidity: f64,
    pub pressure: f64,
    pub battery: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    OutOfRange,
    FromTheFuture,
    Resend,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedReading {
    pub sensor_index: usize,
    pub read_at_ms: i64,
    pub values: ClimateValues,
    pub message_id: String,
    pub fault: Option<Fault>,
}

/// One sensor's identity and the state its next reading grows from.
#[derive(Clone, Debug)]
pub struct ClimateSensor {
    /// `sim-climate-00001`, counting from 1.
    pub id: String,
    pub location_index: usize,
    /// Where a sensor hangs matters: by a wall, in the sun, near a door.
    temperature_bias: f64,
    humidity_bias: f64,
    sea_level_pressure: f64,
    battery: f64,
    battery_drain_per_reading: f64,
    next_sequence: u64,
    /// The last reading without a fault, kept so a resend fault can repeat it byte for byte.
    last_clean_reading: Option<SimulatedReading>,
}

/// The whole simulated fleet and the generator that drives it.
#[derive(Debug)]
pub struct ClimateFleet {
    pub locations: Vec<SimulatedLocation>,
    pub sensors: Vec<ClimateSensor>,
    /// Keeps message ids unique across runs, which reuse sensor ids and sequence numbers.
    run_tag: String,
    random: StdRng,
}

impl ClimateFleet {
    /// Spreads `sensor_count` sensors over the locations round-robin.
    pub fn new(
        locations: Vec<SimulatedLocation>,
        sensor_count: usize,
        run_tag: String,
        mut random: StdRng,
    ) -> ClimateFleet {
        let sensors = (0..sensor_count)
            .map(|index| ClimateSensor {
                id: format!("sim-{SENSOR_KIND}-{:05}", index + 1),
                location_index: index % locations.len().max(1),
                temperature_bias: gaussian(&mut random, 1.0),
                humidity_bias: gaussian(&mut random, 3.0),
                sea_level_pressure: STANDARD_SEA_LEVEL_PRESSURE + gaussian(&mut random, 6.0),
                battery: random.random_range(40.0..=100.0),
                battery_drain_per_reading: random.random_range(0.0005..0.003),
                next_sequence: 1,
                last_clean_reading: None,
            })
            .collect();
        ClimateFleet {
            locations,
            sensors,
            run_tag,
            random,
        }
    }

    /// The next reading of one sensor, measured at `read_at_ms`; `now_ms` is the wall clock, which
    /// a fast-running device clock is ahead of.
    pub fn next_reading(
        &mut self,
        sensor_index: usize,
        read_at_ms: i64,
        now_ms: i64,
    ) -> SimulatedReading {
        let fault = if self.random.random_bool(FAULT_PROBABILITY) {
            Some(match self.random.random_range(0..3) {
                0 => Fault::OutOfRange,
                1 => Fault::FromTheFuture,
                _ => Fault::Resend,
            })
        } else {
            None
        };
        if fault == Some(Fault::Resend)
            && let Some(earlier) = &self.sensors[sensor_index].last_clean_reading
        {
            return SimulatedReading {
                fault,
                ..earlier.clone()
            };
        }
        // A resend with nothing sent yet becomes a glitch instead, keeping the fault rate honest.
        let fault = fault.map(|fault| match fault {
            Fault::Resend => Fault::OutOfRange,
            other => other,
        });
        let mut values = self.measure(sensor_index, read_at_ms);
        let mut read_at_ms = read_at_ms;
        match fault {
            Some(Fault::OutOfRange) => self.glitch(&mut values),
            Some(Fault::FromTheFuture) => read_at_ms = now_ms + FUTURE_CLOCK_SKEW_MS,
            _ => {}
        }
        let sensor = &mut self.sensors[sensor_index];
        let reading = SimulatedReading {
            sensor_index,
            read_at_ms,
            values,
            message_id: format!("{}-{}-{}", sensor.id, self.run_tag, sensor.next_sequence),
            fault,
        };
        sensor.next_sequence += 1;
        if fault.is_none() {
            sensor.last_clean_reading = Some(reading.clone());
        }
        reading
    }

    /// Advances the sensor's slow state and derives this moment's values from it.
    fn measure(&mut self, sensor_index: usize, read_at_ms: i64) -> ClimateValues {
        let random = &mut self.random;
        let sensor = &mut self.sensors[sensor_index];
        let location = &self.locations[sensor.location_index];
        let place = location.place;

        let local_seconds = read_at_ms.div_euclid(1000) + location.utc_offset_seconds(read_at_ms);
        let local_hour = local_seconds.rem_euclid(86_400) as f64 / 3600.0;
        // Warmest around 15:00, coldest around 03:00.
        let daily_cycle = (std::f64::consts::TAU * (local_hour - 15.0) / 24.0).cos();
        let warmth = place.daily_swing * daily_cycle + gaussian(random, 0.3);
        let temperature = place.mean_temperature + sensor.temperature_bias + warmth;
        // Warm air holds more water, so relative humidity falls as the day warms.
        let humidity =
            place.mean_humidity + sensor.humidity_bias - 2.5 * warmth + gaussian(random, 1.5);

        // A random walk pulled gently back towards the standard atmosphere.
        sensor.sea_level_pressure += gaussian(random, 0.08)
            + (STANDARD_SEA_LEVEL_PRESSURE - sensor.sea_level_pressure) * 0.001;
        sensor.sea_level_pressure = sensor.sea_level_pressure.clamp(950.0, 1050.0);

        sensor.battery -= sensor.battery_drain_per_reading * random.random_range(0.5..1.5);
        if sensor.battery < BATTERY_REPLACED_BELOW {
            sensor.battery = 100.0;
        }

        ClimateValues {
            temperature: round_to(temperature.clamp(-40.0, 85.0), 2),
            humidity: round_to(humidity.clamp(0.0, 100.0), 1),
            pressure: round_to(sensor.sea_level_pressure, 1),
            battery: round_to(sensor.battery, 1),
        }
    }

    /// The classic failures of cheap sensors: a sign-bit flip, a stuck converter, a dead chip.
    fn glitch(&mut self, values: &mut ClimateValues) {
        match self.random.random_range(0..3) {
            0 => values.temperature = 127.5,
            1 => values.humidity = 102.3,
            _ => values.pressure = 0.0,
        }
    }
}

/// Normally distributed noise by the Box–Muller transform, which is all the realism needed here.
pub fn gaussian(random: &mut StdRng, standard_deviation: f64) -> f64 {
    let uniform: f64 = random.random_range(f64::EPSILON..1.0);
    let angle: f64 = random.random_range(0.0..std::f64::consts::TAU);
    standard_deviation * (-2.0 * uniform.ln()).sqrt() * angle.cos()
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;

    use super::*;
    use crate::simulate::places::simulated_locations;

    /// 2024-07-15T00:00:00Z.
    const MIDNIGHT_UTC: i64 = 1_721_001_600_000;

    fn fleet(locations: usize, sensors: usize, seed: u64) -> ClimateFleet {
        let mut random = StdRng::seed_from_u64(seed);
        let locations = simulated_locations(locations, &mut random).unwrap();
        ClimateFleet::new(locations, sensors, "test".to_string(), random)
    }

    fn within_declared_bounds(values: &ClimateValues) -> bool {
        let numbers = [
            values.temperature,
            values.humidity,
            values.pressure,
            values.battery,
        ];
        CLIMATE_METRICS
            .iter()
            .zip(numbers)
            .all(|(metric, value)| (metric.min..=metric.max).contains(&value))
    }

    /// Every sensor in turn, one reading a minute per sensor, for several simulated days.
    fn run(fleet: &mut ClimateFleet, readings: usize) -> Vec<SimulatedReading> {
        let sensors = fleet.sensors.len();
        (0..readings)
            .map(|index| {
                let read_at = MIDNIGHT_UTC + (index / sensors) as i64 * 60_000;
                fleet.next_reading(index % sensors, read_at, read_at)
            })
            .collect()
    }

    #[test]
    fn only_injected_faults_leave_the_declared_bounds_or_the_present() {
        let mut fleet = fleet(32, 64, 1);
        for reading in run(&mut fleet, 200_000) {
            match reading.fault {
                None | Some(Fault::Resend) => {
                    assert!(within_declared_bounds(&reading.values), "{reading:?}");
                }
                Some(Fault::OutOfRange) => {
                    assert!(!within_declared_bounds(&reading.values), "{reading:?}");
                }
                Some(Fault::FromTheFuture) => {
                    assert!(within_declared_bounds(&reading.values), "{reading:?}");
                }
            }
        }
    }

    #[test]
    fn about_one_reading_in_two_hundred_is_a_fault_of_every_kind() {
        let mut fleet = fleet(4, 16, 2);
        let readings = run(&mut fleet, 200_000);
        let faults: Vec<Fault> = readings
            .iter()
            .filter_map(|reading| reading.fault)
            .collect();
        let share = faults.len() as f64 / readings.len() as f64;
        assert!((0.003..0.007).contains(&share), "fault share {share}");
        for kind in [Fault::OutOfRange, Fault::FromTheFuture, Fault::Resend] {
            assert!(faults.contains(&kind), "no {kind:?} among the faults");
        }
    }

    #[test]
    fn a_resend_repeats_an_earlier_reading_and_nothing_else_shares_a_message_id() {
        let mut fleet = fleet(4, 16, 3);
        let readings = run(&mut fleet, 100_000);
        let mut seen = HashSet::new();
        for reading in &readings {
            let first_time = seen.insert(reading.message_id.clone());
            assert_eq!(
                first_time,
                reading.fault != Some(Fault::Resend),
                "{reading:?}"
            );
        }
    }

    #[test]
    fn a_reading_from_the_future_is_ten_minutes_ahead_of_the_wall_clock() {
        let mut fleet = fleet(1, 1, 4);
        let (index, future) = run(&mut fleet, 50_000)
            .into_iter()
            .enumerate()
            .find(|(_, reading)| reading.fault == Some(Fault::FromTheFuture))
            .unwrap();
        let scheduled = MIDNIGHT_UTC + index as i64 * 60_000;
        assert_eq!(future.read_at_ms, scheduled + FUTURE_CLOCK_SKEW_MS);
    }

    #[test]
    fn afternoons_are_warmer_and_drier_than_nights_in_local_time() {
        // One location (Berlin, UTC+2 in July) and one reading a minute over ten days.
        let mut fleet = fleet(1, 1, 5);
        let readings = run(&mut fleet, 14_400);
        let at_local_hour = |hour: i64| {
            let picked: Vec<&SimulatedReading> = readings
                .iter()
                .filter(|reading| reading.fault.is_none())
                .filter(|reading| (reading.read_at_ms / 3_600_000 + 2).rem_euclid(24) == hour)
                .collect();
            let count = picked.len() as f64;
            (
                picked
                    .iter()
                    .map(|reading| reading.values.temperature)
                    .sum::<f64>()
                    / count,
                picked
                    .iter()
                    .map(|reading| reading.values.humidity)
                    .sum::<f64>()
                    / count,
            )
        };
        let (afternoon_temperature, afternoon_humidity) = at_local_hour(15);
        let (night_temperature, night_humidity) = at_local_hour(3);
        assert!(afternoon_temperature > night_temperature + 5.0);
        assert!(afternoon_humidity < night_humidity);
    }

    #[test]
    fn the_same_seed_gives_the_same_readings() {
        let first = run(&mut fleet(3, 5, 9), 1_000);
        let second = run(&mut fleet(3, 5, 9), 1_000);
        assert_eq!(first, second);
    }
}
