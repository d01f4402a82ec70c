//! Real cities with rough climate figures, turned into the simulated fleet's locations.
//!
//! The figures (annual mean temperature, typical day-night swing, mean relative humidity) are
//! round numbers good enough to make dashboards look plausible; they are not weather data.

use anyhow::Context;
use jiff::tz::TimeZone;
use rand::Rng;
use rand::rngs::StdRng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Place {
    pub city: &'static str,
    /// ISO 3166-1 alpha-2.
    pub country: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    pub altitude_metres: f64,
    pub timezone: &'static str,
    pub mean_temperature: f64,
    /// Half the difference between the afternoon high and the pre-dawn low, in °C.
    pub daily_swing: f64,
    pub mean_humidity: f64,
}

const fn place(
    city: &'static str,
    country: &'static str,
    (latitude, longitude, altitude_metres): (f64, f64, f64),
    timezone: &'static str,
    (mean_temperature, daily_swing, mean_humidity): (f64, f64, f64),
) -> Place {
    Place {
        city,
        country,
        latitude,
        longitude,
        altitude_metres,
        timezone,
        mean_temperature,
        daily_swing,
        mean_humidity,
    }
}

#[rustfmt::skip]
pub const PLACES: &[Place] = &[
    place("Berlin", "DE", (52.520, 13.405, 34.0), "Europe/Berlin", (10.3, 4.5, 72.0)),
    place("Hamburg", "DE", (53.551, 9.994, 6.0), "Europe/Berlin", (9.8, 3.8, 78.0)),
    place("Munich", "DE", (48.137, 11.575, 519.0), "Europe/Berlin", (9.1, 5.0, 74.0)),
    place("Zurich", "CH", (47.377, 8.540, 408.0), "Europe/Zurich", (9.3, 4.6, 75.0)),
    place("Vienna", "AT", (48.208, 16.373, 190.0), "Europe/Vienna", (10.9, 4.7, 70.0)),
    place("Paris", "FR", (48.857, 2.352, 35.0), "Europe/Paris", (12.3, 4.4, 73.0)),
    place("Madrid", "ES", (40.417, -3.704, 657.0), "Europe/Madrid", (15.0, 6.5, 57.0)),
    place("Lisbon", "PT", (38.722, -9.139, 45.0), "Europe/Lisbon", (17.4, 4.2, 69.0)),
    place("London", "GB", (51.507, -0.128, 11.0), "Europe/London", (11.3, 3.9, 76.0)),
    place("Dublin", "IE", (53.350, -6.260, 20.0), "Europe/Dublin", (9.8, 3.5, 81.0)),
    place("Oslo", "NO", (59.914, 10.752, 23.0), "Europe/Oslo", (6.3, 4.0, 74.0)),
    place("Helsinki", "FI", (60.170, 24.938, 17.0), "Europe/Helsinki", (6.0, 3.6, 79.0)),
    place("Warsaw", "PL", (52.230, 21.012, 100.0), "Europe/Warsaw", (8.5, 4.6, 77.0)),
    place("Athens", "GR", (37.984, 23.728, 70.0), "Europe/Athens", (18.5, 4.8, 61.0)),
    place("Istanbul", "TR", (41.008, 28.978, 39.0), "Europe/Istanbul", (15.2, 3.9, 73.0)),
    place("Cairo", "EG", (30.044, 31.236, 23.0), "Africa/Cairo", (22.4, 6.5, 56.0)),
    place("Nairobi", "KE", (-1.292, 36.822, 1795.0), "Africa/Nairobi", (18.6, 6.0, 68.0)),
    place("Dubai", "AE", (25.205, 55.271, 5.0), "Asia/Dubai", (28.0, 5.0, 58.0)),
    place("Mumbai", "IN", (19.076, 72.878, 14.0), "Asia/Kolkata", (27.2, 3.5, 75.0)),
    place("Singapore", "SG", (1.352, 103.820, 15.0), "Asia/Singapore", (27.5, 3.2, 83.0)),
    place("Tokyo", "JP", (35.676, 139.650, 40.0), "Asia/Tokyo", (15.8, 3.9, 65.0)),
    place("Sydney", "AU", (-33.869, 151.209, 58.0), "Australia/Sydney", (18.4, 3.8, 66.0)),
    place("Auckland", "NZ", (-36.848, 174.763, 26.0), "Pacific/Auckland", (15.4, 3.4, 79.0)),
    place("Toronto", "CA", (43.653, -79.383, 76.0), "America/Toronto", (9.4, 4.5, 70.0)),
    place("New York", "US", (40.713, -74.006, 10.0), "America/New_York", (13.0, 4.2, 63.0)),
    place("Chicago", "US", (41.878, -87.630, 181.0), "America/Chicago", (10.8, 4.8, 68.0)),
    place("Denver", "US", (39.739, -104.990, 1609.0), "America/Denver", (10.4, 7.5, 52.0)),
    place("San Francisco", "US", (37.775, -122.419, 16.0), "America/Los_Angeles", (14.6, 3.5, 75.0)),
    place("Mexico City", "MX", (19.433, -99.133, 2240.0), "America/Mexico_City", (16.7, 6.8, 59.0)),
    place("Sao Paulo", "BR", (-23.551, -46.633, 760.0), "America/Sao_Paulo", (19.6, 4.6, 78.0)),
    place("Buenos Aires", "AR", (-34.604, -58.382, 25.0), "America/Argentina/Buenos_Aires", (17.9, 4.6, 72.0)),
    place("Reykjavik", "IS", (64.147, -21.942, 15.0), "Atlantic/Reykjavik", (5.0, 2.4, 78.0)),
];

/// Kinds of site a sensor might stand at; combined with the city they make distinct names.
const SITES: &[&str] = &[
    "Rooftop",
    "Warehouse",
    "Greenhouse",
    "Office",
    "Cold Store",
    "Depot",
    "School",
    "Data Centre",
];

/// One location of the simulated fleet.
#[derive(Clone, Debug)]
pub struct SimulatedLocation {
    /// `sim-loc-0001`, counting from 1 as a person would.
    pub id: String,
    pub name: String,
    pub place: &'static Place,
    pub latitude: f64,
    pub longitude: f64,
    pub time_zone: TimeZone,
}

impl SimulatedLocation {
    /// Seconds east of UTC at the given instant, daylight saving included.
    pub fn utc_offset_seconds(&self, epoch_millis: i64) -> i64 {
        match jiff::Timestamp::from_millisecond(epoch_millis) {
            Ok(instant) => i64::from(self.time_zone.to_offset(instant).seconds()),
            // Unreachable for any clock this program runs on; solar time is a fine stand-in.
            Err(_) => (self.longitude / 15.0 * 3600.0) as i64,
        }
    }
}

/// Each pass over [`PLACES`] pairs every city with another kind of site ("Berlin Rooftop", then
/// "Berlin Warehouse"); once the kinds run out, names are numbered. Coordinates after the first
/// pass are nudged so no two locations share a point.
pub fn simulated_locations(
    count: usize,
    random: &mut StdRng,
) -> anyhow::Result<Vec<SimulatedLocation>> {
    (0..count)
        .map(|index| {
            let place = &PLACES[index % PLACES.len()];
            let round = index / PLACES.len();
            let site = SITES[(index + round) % SITES.len()];
            let name = if round < SITES.len() {
                format!("{} {site}", place.city)
            } else {
                format!("{} {site} {}", place.city, round + 1)
            };
            let nudge = if round == 0 { 0.0 } else { 0.05 };
            let time_zone = TimeZone::get(place.timezone).with_context(|| {
                format!(
                    "time zone {} is not in the bundled database",
                    place.timezone
                )
            })?;
            Ok(SimulatedLocation {
                id: format!("sim-loc-{:04}", index + 1),
                name,
                place,
                latitude: place.latitude + random.random_range(-nudge..=nudge),
                longitude: place.longitude + random.random_range(-nudge..=nudge),
                time_zone,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_place_has_a_known_time_zone_and_sane_coordinates() {
        for place in PLACES {
            assert!(TimeZone::get(place.timezone).is_ok(), "{}", place.timezone);
            assert!((-90.0..=90.0).contains(&place.latitude), "{}", place.city);
            assert!(
                (-180.0..=180.0).contains(&place.longitude),
                "{}",
                place.city
            );
        }
    }

    #[test]
    fn location_ids_count_from_one_and_names_do_not_repeat() {
        let mut random = StdRng::seed_from_u64(7);
        let locations = simulated_locations(PLACES.len() * 3, &mut random).unwrap();
        assert_eq!(locations[0].id, "sim-loc-0001");
        let mut names: Vec<_> = locations.iter().map(|location| &location.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), locations.len());
    }

    #[test]
    fn the_offset_follows_daylight_saving() {
        let mut random = StdRng::seed_from_u64(7);
        let berlin = simulated_locations(1, &mut random).unwrap().remove(0);
        // 2024-01-15 and 2024-07-15, noon UTC.
        assert_eq!(berlin.utc_offset_seconds(1_705_320_000_000), 3600);
        assert_eq!(berlin.utc_offset_seconds(1_721_044_800_000), 7200);
    }
}
