//! Locations from CSV text: the OpenFlights airports layout, with or without a header row,
//! or any file whose header names the columns.
//!
//! This module owns the mapping from CSV columns to [`Location`] fields and the row-level
//! verdicts (accepted, or rejected with line, column and reason). It must never do I/O
//! beyond the reader it is handed, and never decide whether a row is new or an update: that
//! is the store's job, keyed by [`ImportKey`].
//!
//! Rules, in the order they apply to each row:
//! - Empty fields and `\N` are nulls.
//! - A header is recognised when the first record names a latitude and a longitude column
//!   (case-insensitively, with aliases: `lat`/`latitude`, `lon`/`lng`/`long`/`longitude`, ...).
//!   Otherwise the file is read as the headerless OpenFlights layout
//!   `id,name,city,country,iata,icao,latitude,longitude,altitude,timezone,DST,tz,type,source`.
//! - Altitude is in feet, as in OpenFlights, and stored in metres; a column named
//!   `altitude_m` or `elevation_m` is taken as metres already.
//! - The IANA zone comes from the tz-database column (`tz`, `tz_database`, `timezone_name`,
//!   `iana_timezone`, ...). When a file has such a column, a column named `timezone` is the
//!   OpenFlights UTC offset in hours and is kept as an attribute; when it has none, `timezone`
//!   is the IANA name. A row without a zone but with a whole-hour offset gets the IANA
//!   fixed-offset zone `Etc/GMT∓N` (no daylight saving; note the POSIX sign inversion);
//!   a row with neither is rejected.
//! - Columns Audrey does not model become string attributes under their header name.
//! - The key is the id column when the file has one, else icao, else iata; a row without a
//!   key, or whose key an earlier row of the file already used, is rejected.

use std::collections::HashSet;

use serde_json::Value;

use crate::{Attributes, FieldError, Location, LocationId, LocationInput, Millis, Reason};

const FEET_TO_METRES: f64 = 0.3048;

/// The OpenFlights column order used when a file has no header row.
pub const OPENFLIGHTS_COLUMNS: [&str; 14] = [
    "id",
    "name",
    "city",
    "country",
    "iata",
    "icao",
    "latitude",
    "longitude",
    "altitude",
    "timezone",
    "DST",
    "tz",
    "type",
    "source",
];

/// How an imported row finds the stored location it updates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ImportKey {
    /// The file's id column: the location id itself.
    Id(LocationId),
    /// The ICAO code: the stored location with this `icao` (new ones get the code as id).
    Icao(String),
    /// The IATA code, used when a row has neither id nor ICAO code.
    Iata(String),
}

/// One accepted row, ready for the store.
#[derive(Clone, Debug)]
pub struct ImportRow {
    /// The data row: 1 for the first record after any header.
    pub row: u64,
    /// The line in the file where the record starts (1-based; a header is line 1).
    pub line: u64,
    pub key: ImportKey,
    /// Its id is the key's default id; the store may swap in the id of a location it matched
    /// by code.
    pub location: Location,
}

/// Why one row was not imported.
#[derive(Clone, Debug, PartialEq)]
pub struct RowRejection {
    /// The data row: 1 for the first record after any header.
    pub row: u64,
    /// The line in the file where the record starts (1-based; a header is line 1).
    pub line: u64,
    /// The column's header name (the OpenFlights name for a headerless file).
    pub column: String,
    pub reason: Reason,
    pub message: String,
}

/// Everything read from one file.
#[derive(Clone, Debug, Default)]
pub struct ParsedLocations {
    pub header_present: bool,
    /// Data records read (accepted + rejected).
    pub records: u64,
    pub rows: Vec<ImportRow>,
    pub rejected: Vec<RowRejection>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Id,
    Name,
    City,
    Country,
    Iata,
    Icao,
    Latitude,
    Longitude,
    AltitudeFeet,
    AltitudeMetres,
    Zone,
    /// The OpenFlights `timezone` column: the UTC offset in hours. Also kept as an attribute.
    UtcOffset,
    Attribute,
}

fn normalise(header: &str) -> String {
    header
        .trim()
        .trim_start_matches('\u{feff}')
        .to_lowercase()
        .replace([' ', '-'], "_")
}

fn field_for(name: &str, has_zone_column: bool) -> Field {
    match name {
        "id" | "airport_id" | "location_id" => Field::Id,
        "name" | "airport_name" => Field::Name,
        "city" | "municipality" => Field::City,
        "country" => Field::Country,
        "iata" | "iata_code" | "iata/faa" => Field::Iata,
        "icao" | "icao_code" | "ident" => Field::Icao,
        "lat" | "latitude" | "latitude_deg" => Field::Latitude,
        "lon" | "lng" | "long" | "longitude" | "longitude_deg" => Field::Longitude,
        "altitude" | "elevation" | "alt" | "altitude_ft" | "elevation_ft" => Field::AltitudeFeet,
        "altitude_m" | "elevation_m" => Field::AltitudeMetres,
        "timezone" if has_zone_column => Field::UtcOffset,
        "timezone" if !has_zone_column => Field::Zone,
        name if is_zone_name(name) => Field::Zone,
        _ => Field::Attribute,
    }
}

fn is_zone_name(name: &str) -> bool {
    matches!(
        name,
        "tz" | "tz_database"
            | "tz_database_time_zone"
            | "tz_database_timezone"
            | "timezone_name"
            | "time_zone_name"
            | "iana_timezone"
            | "iana_time_zone"
            | "olson_timezone"
    )
}

/// Column layout of one file.
struct Columns {
    names: Vec<String>,
    fields: Vec<Field>,
}

impl Columns {
    fn from_header(header: &csv::StringRecord) -> Columns {
        let normalised: Vec<String> = header.iter().map(normalise).collect();
        let has_zone_column = normalised.iter().any(|name| is_zone_name(name));
        Columns {
            names: header.iter().map(|name| name.trim().to_string()).collect(),
            fields: normalised
                .iter()
                .map(|name| field_for(name, has_zone_column))
                .collect(),
        }
    }

    fn openflights() -> Columns {
        let header = csv::StringRecord::from(OPENFLIGHTS_COLUMNS.to_vec());
        Columns::from_header(&header)
    }

    fn looks_like_header(record: &csv::StringRecord) -> bool {
        let columns = Columns::from_header(record);
        columns.fields.contains(&Field::Latitude) && columns.fields.contains(&Field::Longitude)
    }

    fn position(&self, field: Field) -> Option<usize> {
        self.fields.iter().position(|candidate| *candidate == field)
    }

    fn name_of(&self, field: Field, fallback: &str) -> String {
        self.position(field)
            .map(|index| self.names[index].clone())
            .unwrap_or_else(|| fallback.to_string())
    }
}

fn null_if_empty(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty() && value != "\\N").then_some(value)
}

/// Reads a whole CSV file. Fails only when the bytes are not CSV at all (bad UTF-8, a
/// broken quote); each bad row is a [`RowRejection`] instead.
pub fn parse_locations_csv(
    input: impl std::io::Read,
    now: Millis,
) -> Result<ParsedLocations, FieldError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut parsed = ParsedLocations::default();
    let mut columns: Option<Columns> = None;
    let mut seen_keys: HashSet<ImportKey> = HashSet::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(0, |position| position.line());
                return Err(FieldError::new(
                    "body",
                    Reason::Malformed,
                    format!("the file is not readable CSV near line {line}: {error}"),
                ));
            }
        }
        let line = record.position().map_or(0, |position| position.line());
        if columns.is_none() {
            let header_present = Columns::looks_like_header(&record);
            parsed.header_present = header_present;
            columns = Some(if header_present {
                Columns::from_header(&record)
            } else {
                Columns::openflights()
            });
            if header_present {
                continue;
            }
        }
        let Some(layout) = columns.as_ref() else {
            continue;
        };
        parsed.records += 1;
        let row_number = parsed.records;
        match parse_row(layout, &record, row_number, line, now) {
            Ok(row) => {
                if seen_keys.insert(row.key.clone()) {
                    parsed.rows.push(row);
                } else {
                    let (field, fallback) = match row.key {
                        ImportKey::Id(_) => (Field::Id, "id"),
                        ImportKey::Icao(_) => (Field::Icao, "icao"),
                        ImportKey::Iata(_) => (Field::Iata, "iata"),
                    };
                    parsed.rejected.push(RowRejection {
                        row: row_number,
                        line,
                        column: layout.name_of(field, fallback),
                        reason: Reason::DuplicateKey,
                        message: format!(
                            "{} was already used by an earlier row of this file",
                            describe_key(&row.key)
                        ),
                    });
                }
            }
            Err(rejection) => parsed.rejected.push(rejection),
        }
    }
    Ok(parsed)
}

fn describe_key(key: &ImportKey) -> String {
    match key {
        ImportKey::Id(id) => format!("id {:?}", id.as_str()),
        ImportKey::Icao(code) => format!("icao code {code:?}"),
        ImportKey::Iata(code) => format!("iata code {code:?}"),
    }
}

fn parse_row(
    columns: &Columns,
    record: &csv::StringRecord,
    row: u64,
    line: u64,
    now: Millis,
) -> Result<ImportRow, RowRejection> {
    let reject = |column: String, reason: Reason, message: String| RowRejection {
        row,
        line,
        column,
        reason,
        message,
    };
    if record.len() != columns.fields.len() {
        return Err(reject(
            String::new(),
            Reason::Malformed,
            format!(
                "has {} fields, the file has {} columns",
                record.len(),
                columns.fields.len()
            ),
        ));
    }
    let mut input = LocationInput::default();
    let mut id_text = None;
    let mut zone = None;
    let mut offset_hours = None;
    let mut attributes = Attributes::new();
    let mut latitude = None;
    let mut longitude = None;
    for (index, raw) in record.iter().enumerate() {
        let name = &columns.names[index];
        let field = columns.fields[index];
        let Some(value) = null_if_empty(raw) else {
            continue;
        };
        let number = |what: &str| {
            value.parse::<f64>().map_err(|_| {
                reject(
                    name.clone(),
                    Reason::InvalidType,
                    format!("{value:?} is not a number ({what})"),
                )
            })
        };
        match field {
            Field::Id => id_text = Some(value.to_string()),
            Field::Name => input.name = value.to_string(),
            Field::City => input.city = Some(value.to_string()),
            Field::Country => input.country = Some(value.to_string()),
            Field::Iata => input.iata = Some(value.to_string()),
            Field::Icao => input.icao = Some(value.to_string()),
            Field::Latitude => latitude = Some(number("degrees")?),
            Field::Longitude => longitude = Some(number("degrees")?),
            Field::AltitudeFeet => input.altitude = Some(number("feet")? * FEET_TO_METRES),
            Field::AltitudeMetres => input.altitude = Some(number("metres")?),
            Field::Zone => zone = Some(value.to_string()),
            Field::UtcOffset => {
                offset_hours = value.parse::<f64>().ok();
                attributes.insert(name.clone(), Value::String(value.to_string()));
            }
            Field::Attribute => {
                attributes.insert(name.clone(), Value::String(value.to_string()));
            }
        }
    }
    let missing = |field: Field, fallback: &str| {
        reject(
            columns.name_of(field, fallback),
            Reason::MissingField,
            "is empty; every location needs one".to_string(),
        )
    };
    input.latitude = latitude.ok_or_else(|| missing(Field::Latitude, "latitude"))?;
    input.longitude = longitude.ok_or_else(|| missing(Field::Longitude, "longitude"))?;
    let zone_column = columns.name_of(Field::Zone, "tz");
    input.timezone = Some(match zone {
        Some(zone) => zone,
        None => fixed_offset_zone(offset_hours).ok_or_else(|| {
            reject(
                zone_column.clone(),
                Reason::MissingField,
                match offset_hours {
                    Some(hours) => format!(
                        "is empty and the UTC offset {hours} is not whole hours, so no IANA \
                         zone can stand in for it"
                    ),
                    None => "is empty and the row has no UTC offset either".to_string(),
                },
            )
        })?,
    });
    input.attributes = Some(attributes);
    let key = import_key(columns, id_text.as_deref(), &input, &reject)?;
    let id = match &key {
        ImportKey::Id(id) => id.clone(),
        ImportKey::Icao(code) | ImportKey::Iata(code) => LocationId::parse(code)
            .map_err(|error| reject(code.clone(), error.reason, error.message))?,
    };
    let location = input.into_location(id, now, None).map_err(|errors| {
        let first = &errors[0];
        let column = match first.path.as_str() {
            "latitude" => columns.name_of(Field::Latitude, "latitude"),
            "longitude" => columns.name_of(Field::Longitude, "longitude"),
            "altitude" => columns.name_of(Field::AltitudeFeet, "altitude"),
            "timezone" => zone_column.clone(),
            "name" => columns.name_of(Field::Name, "name"),
            "city" => columns.name_of(Field::City, "city"),
            "country" => columns.name_of(Field::Country, "country"),
            "iata" => columns.name_of(Field::Iata, "iata"),
            "icao" => columns.name_of(Field::Icao, "icao"),
            other => other.to_string(),
        };
        let message = errors
            .iter()
            .map(|error| format!("{}: {}", error.path, error.message))
            .collect::<Vec<_>>()
            .join("; ");
        reject(column, first.reason, message)
    })?;
    Ok(ImportRow {
        row,
        line,
        key,
        location,
    })
}

fn import_key(
    columns: &Columns,
    id_text: Option<&str>,
    input: &LocationInput,
    reject: &impl Fn(String, Reason, String) -> RowRejection,
) -> Result<ImportKey, RowRejection> {
    if let Some(position) = columns.position(Field::Id) {
        let column = columns.names[position].clone();
        let text = id_text.ok_or_else(|| {
            reject(
                column.clone(),
                Reason::MissingField,
                "is empty; the file has an id column, so every row needs an id".to_string(),
            )
        })?;
        return LocationId::parse(text)
            .map(ImportKey::Id)
            .map_err(|error| reject(column, error.reason, error.message));
    }
    if let Some(icao) = &input.icao {
        return Ok(ImportKey::Icao(icao.clone()));
    }
    if let Some(iata) = &input.iata {
        return Ok(ImportKey::Iata(iata.clone()));
    }
    Err(reject(
        columns.name_of(Field::Icao, "icao"),
        Reason::MissingField,
        "the row has no id, icao or iata code to key it by".to_string(),
    ))
}

/// `Etc/GMT-10` is UTC+10: the IANA fixed-offset zones invert the sign (POSIX style).
fn fixed_offset_zone(offset_hours: Option<f64>) -> Option<String> {
    let hours = offset_hours?;
    if hours.fract() != 0.0 || !(-12.0..=14.0).contains(&hours) {
        return None;
    }
    let whole = hours as i64;
    Some(match whole {
        0 => "Etc/GMT".to_string(),
        positive if positive > 0 => format!("Etc/GMT-{positive}"),
        negative => format!("Etc/GMT+{}", -negative),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "id,name,city,country,iata,icao,latitude,longitude,altitude,timezone,DST,tz,type,source\n";

    fn parse(text: &str) -> ParsedLocations {
        parse_locations_csv(text.as_bytes(), Millis(0)).unwrap()
    }

    #[test]
    fn a_headerless_openflights_row_is_read_with_altitude_in_metres() {
        let parsed = parse(
            "1,\"Goroka Airport\",\"Goroka\",\"Papua New Guinea\",\"GKA\",\"AYGA\",-6.08,145.39,5282,10,\"U\",\"Pacific/Port_Moresby\",\"airport\",\"OurAirports\"\n",
        );
        assert!(!parsed.header_present);
        let row = &parsed.rows[0];
        assert_eq!(row.key, ImportKey::Id(LocationId::parse("1").unwrap()));
        assert_eq!(row.location.timezone, "Pacific/Port_Moresby");
        assert!((row.location.altitude.unwrap() - 5282.0 * 0.3048).abs() < 1e-9);
        assert_eq!(row.location.attributes["DST"], "U");
        assert_eq!(row.location.attributes["timezone"], "10");
        assert!(!row.location.attributes.contains_key("tz"));
    }

    #[test]
    fn header_names_match_case_insensitively_with_aliases_and_extra_columns_become_attributes() {
        let parsed = parse(
            "ICAO,Name,LAT,Lng,Elevation,TZ Database,Runways\nEDDB,Berlin,52.36,13.50,157,Europe/Berlin,2\n",
        );
        assert!(parsed.header_present);
        let row = &parsed.rows[0];
        assert_eq!(row.key, ImportKey::Icao("EDDB".into()));
        assert_eq!(row.location.id.as_str(), "EDDB");
        assert_eq!(row.location.timezone, "Europe/Berlin");
        assert_eq!(row.location.attributes["Runways"], "2");
    }

    #[test]
    fn empty_fields_and_backslash_n_are_nulls() {
        let parsed = parse(&format!(
            "{HEADER}7,Somewhere,\\N,,\\N,ABCD,1,2,\\N,0,N,Europe/Paris,airport,x\n"
        ));
        let location = &parsed.rows[0].location;
        assert_eq!(location.city, None);
        assert_eq!(location.country, None);
        assert_eq!(location.iata, None);
        assert_eq!(location.altitude, None);
    }

    #[test]
    fn a_missing_zone_falls_back_to_the_fixed_offset_zone_or_is_rejected() {
        let parsed = parse(&format!(
            "{HEADER}1,A,,,,,1,2,0,-5,U,,airport,x\n2,B,,,,,1,2,0,9.5,U,,airport,x\n3,C,,,,,1,2,0,,,,airport,x\n"
        ));
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].location.timezone, "Etc/GMT+5");
        assert_eq!(parsed.rejected.len(), 2);
        assert_eq!(parsed.rejected[0].line, 3);
        assert_eq!(parsed.rejected[0].column, "tz");
        assert!(parsed.rejected[0].message.contains("9.5"));
        assert_eq!(parsed.rejected[1].line, 4);
    }

    #[test]
    fn bad_rows_are_rejected_with_line_column_and_reason() {
        let parsed = parse(&format!(
            "{HEADER}1,A,,,,,91,2,0,0,U,Europe/Paris,airport,x\n\
             2,B,,,,,1,east,0,0,U,Europe/Paris,airport,x\n\
             3,C,,,,,1,2,0,0,U,Mars/Olympus,airport,x\n\
             9,D,,,,,1,2,0,0,U,Europe/Paris,airport,x\n\
             5,E,,,,,1,2\n\
             6,F,,,XY1,,1,2,0,0,U,Europe/Paris,airport,x\n\
             9,G,,,,,1,2,0,0,U,Europe/Paris,airport,x\n"
        ));
        let verdicts: Vec<_> = parsed
            .rejected
            .iter()
            .map(|rejection| (rejection.line, rejection.column.as_str(), rejection.reason))
            .collect();
        assert_eq!(
            verdicts,
            [
                (2, "latitude", Reason::OutOfRange),
                (3, "longitude", Reason::InvalidType),
                (4, "tz", Reason::InvalidFormat),
                (6, "", Reason::Malformed),
                (7, "iata", Reason::InvalidFormat),
                (8, "id", Reason::DuplicateKey),
            ]
        );
        assert_eq!(parsed.records, 7);
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].location.name, "D");
    }

    #[test]
    fn a_row_without_any_key_is_rejected_when_the_file_has_no_id_column() {
        let parsed = parse("name,lat,lon,tz\nNowhere,1,2,UTC\n");
        assert_eq!(parsed.rejected[0].reason, Reason::MissingField);
        assert_eq!(parsed.rejected[0].column, "icao");
    }
}
