//! Great-circle distances and radius searches on the Earth as a sphere.
//!
//! Owns the distance formula every backend must agree with: haversine on a sphere of the
//! IUGG mean Earth radius, 6371.0088 km. Answers differ from the ellipsoid (WGS 84) by up to
//! about 0.5 %, which is fine for "what is near"; never use it for surveying.
//! Pure arithmetic: no I/O.

use crate::{FieldError, Reason};

/// IUGG mean Earth radius R₁ in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// The largest radius a search takes: half the Earth's circumference covers everything.
pub const MAX_RADIUS_KM: f64 = 20_038.0;

/// Great-circle distance between two points given in degrees, in kilometres (haversine).
pub fn distance_km(latitude_a: f64, longitude_a: f64, latitude_b: f64, longitude_b: f64) -> f64 {
    let (phi_a, phi_b) = (latitude_a.to_radians(), latitude_b.to_radians());
    let delta_phi = phi_b - phi_a;
    let delta_lambda = (longitude_b - longitude_a).to_radians();
    let half_chord = (delta_phi / 2.0).sin().powi(2)
        + phi_a.cos() * phi_b.cos() * (delta_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * half_chord.sqrt().min(1.0).asin()
}

/// A search area: every point within `radius_km` of the centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoCircle {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_km: f64,
}

/// A latitude/longitude box that contains a circle; a cheap index-friendly prefilter.
/// When the circle crosses the antimeridian, `west > east` and the box wraps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundingBox {
    pub south: f64,
    pub north: f64,
    pub west: f64,
    pub east: f64,
}

impl BoundingBox {
    pub fn wraps(&self) -> bool {
        self.west > self.east
    }
}

impl GeoCircle {
    /// Checks the centre and radius; errors name the given parameter names.
    pub fn new(
        latitude: f64,
        longitude: f64,
        radius_km: f64,
        names: [&str; 3],
    ) -> Result<GeoCircle, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !(latitude.is_finite() && (-90.0..=90.0).contains(&latitude)) {
            errors.push(FieldError::new(
                names[0],
                Reason::OutOfRange,
                format!("must be between -90 and 90, got {latitude}"),
            ));
        }
        if !(longitude.is_finite() && (-180.0..=180.0).contains(&longitude)) {
            errors.push(FieldError::new(
                names[1],
                Reason::OutOfRange,
                format!("must be between -180 and 180, got {longitude}"),
            ));
        }
        if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= MAX_RADIUS_KM) {
            errors.push(FieldError::new(
                names[2],
                Reason::OutOfRange,
                format!("must be more than 0 and at most {MAX_RADIUS_KM} km, got {radius_km}"),
            ));
        }
        if errors.is_empty() {
            Ok(GeoCircle {
                latitude,
                longitude,
                radius_km,
            })
        } else {
            Err(errors)
        }
    }

    pub fn distance_to(&self, latitude: f64, longitude: f64) -> f64 {
        distance_km(self.latitude, self.longitude, latitude, longitude)
    }

    pub fn contains(&self, latitude: f64, longitude: f64) -> bool {
        self.distance_to(latitude, longitude) <= self.radius_km
    }

    /// A box that holds the whole circle (it may hold more; never less).
    pub fn bounding_box(&self) -> BoundingBox {
        let angular = self.radius_km / EARTH_RADIUS_KM;
        let delta_latitude = angular.to_degrees();
        let south = self.latitude - delta_latitude;
        let north = self.latitude + delta_latitude;
        if south <= -90.0 || north >= 90.0 {
            // A pole lies inside: every longitude is in reach.
            return BoundingBox {
                south: south.max(-90.0),
                north: north.min(90.0),
                west: -180.0,
                east: 180.0,
            };
        }
        // The widest longitude span is at the latitude where the circle touches a meridian
        // tangentially: asin(sin(r) / cos(φ)).
        let ratio = angular.sin() / self.latitude.to_radians().cos();
        if ratio >= 1.0 {
            return BoundingBox {
                south,
                north,
                west: -180.0,
                east: 180.0,
            };
        }
        let delta_longitude = ratio.asin().to_degrees();
        let mut west = self.longitude - delta_longitude;
        let mut east = self.longitude + delta_longitude;
        if west < -180.0 {
            west += 360.0;
        }
        if east > 180.0 {
            east -= 360.0;
        }
        BoundingBox {
            south,
            north,
            west,
            east,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let distance = distance_km(0.0, 0.0, 1.0, 0.0);
        assert!((distance - 111.195).abs() < 0.01, "{distance}");
    }

    #[test]
    fn antipodes_are_half_the_circumference_apart() {
        let distance = distance_km(10.0, 20.0, -10.0, -160.0);
        assert!((distance - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-3);
    }

    #[test]
    fn the_bounding_box_holds_every_point_of_the_circle() {
        for (latitude, longitude, radius) in [
            (52.5, 13.4, 500.0),
            (-33.9, 151.2, 2000.0),
            (64.0, 179.5, 300.0),
            (0.0, -179.9, 50.0),
        ] {
            let circle = GeoCircle::new(latitude, longitude, radius, ["a", "b", "c"]).unwrap();
            let bounds = circle.bounding_box();
            for step in 0..360 {
                let bearing = f64::from(step).to_radians();
                let angular = radius / EARTH_RADIUS_KM * 0.999;
                let phi = latitude.to_radians();
                let point_phi =
                    (phi.sin() * angular.cos() + phi.cos() * angular.sin() * bearing.cos()).asin();
                let point_lambda = longitude.to_radians()
                    + (bearing.sin() * angular.sin() * phi.cos())
                        .atan2(angular.cos() - phi.sin() * point_phi.sin());
                let (lat, mut lon) = (point_phi.to_degrees(), point_lambda.to_degrees());
                lon = (lon + 540.0) % 360.0 - 180.0;
                assert!(circle.contains(lat, lon));
                assert!(lat >= bounds.south && lat <= bounds.north);
                let inside_longitude = if bounds.wraps() {
                    lon >= bounds.west || lon <= bounds.east
                } else {
                    lon >= bounds.west && lon <= bounds.east
                };
                assert!(inside_longitude, "{lat},{lon} outside {bounds:?}");
            }
        }
    }

    #[test]
    fn a_negative_radius_is_refused_by_name() {
        let errors = GeoCircle::new(0.0, 0.0, -1.0, ["lat", "lon", "radius_km"]).unwrap_err();
        assert_eq!(errors[0].path, "radius_km");
    }
}
