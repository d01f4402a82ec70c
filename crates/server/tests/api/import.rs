//! `POST /api/v1/locations/import` against the real OpenFlights file and generated files.
//! Expected answers are computed here from the file with the `csv` tokenizer only, not with
//! the server's column rules.

use std::path::PathBuf;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, error_of};

/// `$AUDREY_SHARED_DATA/airports.csv`, else `../../../shared/data/airports.csv` from the
/// crate. Absent: skip with a notice, or fail when `CI` is set.
pub fn airports_file() -> Option<PathBuf> {
    let directory = std::env::var_os("AUDREY_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let path = directory.join("airports.csv");
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{} is missing and CI is set", path.display());
    }
    eprintln!(
        "SKIPPED: {} not found (set AUDREY_SHARED_DATA)",
        path.display()
    );
    None
}

/// The file's data records as strings, header dropped.
pub fn airport_records(path: &PathBuf) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .unwrap();
    reader
        .records()
        .map(|record| record.unwrap().iter().map(str::to_string).collect())
        .collect()
}

pub async fn import(app: &TestApp, body: Vec<u8>) -> Value {
    let response = app
        .post_raw("/api/v1/locations/import", "text/csv", body)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Why the test expects a row of the airports file to be refused, if it does:
/// no IANA zone and no whole-hour offset, or a code of the wrong shape.
pub fn expected_rejection(record: &[String]) -> Option<&'static str> {
    let (iata, icao, offset, zone) = (&record[4], &record[5], &record[9], &record[11]);
    let whole_hours = offset
        .parse::<f64>()
        .is_ok_and(|hours| hours.fract() == 0.0);
    if zone.is_empty() && !whole_hours {
        return Some("tz");
    }
    let letters = |code: &str| code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase());
    let icao_shape = |code: &str| {
        code.len() == 4
            && code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    if !iata.is_empty() && !letters(iata) {
        return Some("iata");
    }
    if !icao.is_empty() && !icao_shape(icao) {
        return Some("icao");
    }
    None
}

#[tokio::test]
async fn the_airports_file_is_imported_with_its_messy_rows_reported() {
    let Some(path) = airports_file() else { return };
    let records = airport_records(&path);
    let app = TestApp::spawn().await;
    let report = import(&app, std::fs::read(&path).unwrap()).await;

    let expected: Vec<(u64, &str)> = records
        .iter()
        .enumerate()
        .filter_map(|(index, record)| expected_rejection(record).map(|c| (index as u64 + 1, c)))
        .collect();
    assert!(expected.len() > 100, "the file has messy rows");
    assert_eq!(report["header"], true);
    assert_eq!(report["rows"], records.len() as u64);
    assert_eq!(report["rejected"], expected.len() as u64);
    assert_eq!(report["inserted"], (records.len() - expected.len()) as u64);
    assert_eq!(report["updated"], 0);
    let rejections = report["rejections"].as_array().unwrap();
    let got: Vec<(u64, &str)> = rejections
        .iter()
        .map(|r| (r["row"].as_u64().unwrap(), r["column"].as_str().unwrap()))
        .collect();
    assert_eq!(got, expected);
    for rejection in rejections {
        assert_eq!(
            rejection["line"].as_u64().unwrap(),
            rejection["row"].as_u64().unwrap() + 1,
            "no quoted newlines in this file: line = row + header"
        );
        assert!(!rejection["message"].as_str().unwrap().is_empty());
    }
    let fractional = rejections
        .iter()
        .find(|r| r["message"].as_str().unwrap().contains("not whole hours"))
        .expect("a row with a half-hour offset and no zone");
    assert_eq!(fractional["reason"], "missing_field");
    let bad_icao = rejections.iter().find(|r| r["column"] == "icao").unwrap();
    assert_eq!(bad_icao["reason"], "invalid_format");

    // Exact rows, field by field against the file.
    let by_id = |id: &str| records.iter().find(|record| record[0] == id).unwrap();
    let egilsstadir = by_id("12");
    let stored = app.get_json("/api/v1/locations/12").await;
    assert_eq!(stored["name"], "Egilsstaðir Airport");
    assert_eq!(stored["name"], egilsstadir[1].as_str());
    assert_eq!(stored["city"], egilsstadir[2].as_str());
    assert_eq!(stored["country"], "Iceland");
    assert_eq!(stored["iata"], "EGS");
    assert_eq!(stored["icao"], "BIEG");
    assert_eq!(
        stored["latitude"].as_f64().unwrap(),
        egilsstadir[6].parse::<f64>().unwrap()
    );
    assert_eq!(
        stored["longitude"].as_f64().unwrap(),
        egilsstadir[7].parse::<f64>().unwrap()
    );
    let feet: f64 = egilsstadir[8].parse().unwrap();
    assert!((stored["altitude"].as_f64().unwrap() - feet * 0.3048).abs() < 1e-9);
    assert_eq!(stored["timezone"], "Atlantic/Reykjavik");
    assert_eq!(stored["attributes"]["DST"], "N");
    assert_eq!(stored["attributes"]["type"], "airport");
    assert_eq!(stored["attributes"]["source"], "OurAirports");

    // An empty iata field is a null, not an empty string.
    let winnipeg = app.get_json("/api/v1/locations/22").await;
    assert_eq!(by_id("22")[4], "");
    assert_eq!(winnipeg["iata"], Value::Null);
    assert_eq!(winnipeg["icao"], "CYAV");

    // A row without a zone but with a whole-hour offset gets the fixed-offset zone.
    let no_zone = records
        .iter()
        .find(|r| r[11].is_empty() && r[9] == "-5" && expected_rejection(r).is_none())
        .unwrap();
    let stored = app
        .get_json(&format!("/api/v1/locations/{}", no_zone[0]))
        .await;
    assert_eq!(stored["timezone"], "Etc/GMT+5");

    // An empty city is a null (in this file every cityless row also lacks a usable zone,
    // so each is either stored with a null city or reported).
    let cityless: Vec<&Vec<String>> = records.iter().filter(|r| r[2].is_empty()).collect();
    assert!(!cityless.is_empty());
    for record in cityless {
        let response = app.get(&format!("/api/v1/locations/{}", record[0])).await;
        match expected_rejection(record) {
            Some(_) => assert_eq!(response.status(), StatusCode::NOT_FOUND),
            None => {
                let stored: Value = response.json().await.unwrap();
                assert_eq!(stored["city"], Value::Null);
            }
        }
    }

    // Every non-ASCII name arrives intact.
    let non_ascii: Vec<&Vec<String>> = records
        .iter()
        .filter(|r| !r[1].is_ascii() && expected_rejection(r).is_none())
        .take(40)
        .collect();
    assert!(non_ascii.len() >= 40);
    for record in non_ascii {
        let stored = app
            .get_json(&format!("/api/v1/locations/{}", record[0]))
            .await;
        assert_eq!(stored["name"], record[1].as_str());
    }
    app.stop().await;
}

#[tokio::test]
async fn importing_the_same_file_again_changes_nothing_and_an_edit_is_an_update() {
    let Some(path) = airports_file() else { return };
    let app = TestApp::spawn().await;
    let bytes = std::fs::read(&path).unwrap();
    let first = import(&app, bytes.clone()).await;
    let before = app.get_json("/api/v1/locations/12").await;
    let second = import(&app, bytes.clone()).await;
    assert_eq!(second["inserted"], 0);
    assert_eq!(second["updated"], 0);
    assert_eq!(second["unchanged"], first["inserted"]);
    assert_eq!(second["rejected"], first["rejected"]);
    assert_eq!(app.get_json("/api/v1/locations/12").await, before);

    let text = String::from_utf8(bytes).unwrap();
    let edited = text.replace("\"Egilsstaðir Airport\"", "\"Egilsstaðir Regional\"");
    let third = import(&app, edited.into_bytes()).await;
    assert_eq!(third["updated"], 1);
    assert_eq!(third["inserted"], 0);
    let after = app.get_json("/api/v1/locations/12").await;
    assert_eq!(after["name"], "Egilsstaðir Regional");
    assert_eq!(after["created_at"], before["created_at"]);
    app.stop().await;
}

#[tokio::test]
async fn a_headerless_file_with_broken_rows_imports_the_good_ones() {
    let app = TestApp::spawn().await;
    let file = "\
1,\"Good\",\"Town\",\"Land\",\"GOO\",\"GOOD\",10.5,20.25,100,1,\"E\",\"Europe/Paris\",\"airport\",\"test\"\n\
2,\"Too far north\",\"Town\",\"Land\",,,95,20,100,1,\"E\",\"Europe/Paris\",\"airport\",\"test\"\n\
3,\"No zone\",\"Town\",\"Land\",,,10,20,100,5.75,\"E\",\\N,\"airport\",\"test\"\n\
4,\"Bad zone\",\"Town\",\"Land\",,,10,20,100,1,\"E\",\"Europe/Atlantis\",\"airport\",\"test\"\n\
1,\"Twice\",\"Town\",\"Land\",,,10,20,100,1,\"E\",\"Europe/Paris\",\"airport\",\"test\"\n\
6,\"Short\",\"Town\"\n\
7,\"Alt\",\\N,\\N,\\N,\\N,-33.5,151.0,feet,10,\"O\",\"Australia/Sydney\",\"airport\",\"test\"\n\
8,\"Kept\",\\N,\\N,\\N,\\N,-33.5,151.0,\\N,10,\"O\",\"Australia/Sydney\",\"airport\",\"test\"\n";
    let report = import(&app, file.as_bytes().to_vec()).await;
    assert_eq!(report["header"], false);
    assert_eq!(report["rows"], 8);
    assert_eq!(report["inserted"], 2);
    let verdicts: Vec<(u64, String, String)> = report["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_u64().unwrap(),
                r["column"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect =
        |row: u64, column: &str, reason: &str| (row, column.to_string(), reason.to_string());
    assert_eq!(
        verdicts,
        [
            expect(2, "latitude", "out_of_range"),
            expect(3, "tz", "missing_field"),
            expect(4, "tz", "invalid_format"),
            expect(5, "id", "duplicate_key"),
            expect(6, "", "malformed"),
            expect(7, "altitude", "invalid_type"),
        ]
    );
    let kept = app.get_json("/api/v1/locations/8").await;
    assert_eq!(kept["city"], Value::Null);
    assert_eq!(kept["altitude"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_multipart_upload_is_imported_like_a_csv_body() {
    let app = TestApp::spawn().await;
    let file = "ICAO,Name,Lat,Lon,Elevation,TZ,Runways\nEDDB,Berlin Brandenburg,52.3667,13.5033,157,Europe/Berlin,2\n";
    // Built by hand, as a browser form would send it.
    let boundary = "audrey-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"places.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{file}\r\n--{boundary}--\r\n"
    );
    let response = app
        .post_raw(
            "/api/v1/locations/import",
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["inserted"], 1);
    let stored = app.get_json("/api/v1/locations/EDDB").await;
    assert_eq!(stored["attributes"]["Runways"], "2");
    assert!((stored["altitude"].as_f64().unwrap() - 157.0 * 0.3048).abs() < 1e-9);

    // Keyed by icao: a second file with another name updates the same record.
    let again = "icao,name,latitude,longitude,tz\nEDDB,BER,52.3667,13.5033,Europe/Berlin\n";
    let report = import(&app, again.as_bytes().to_vec()).await;
    assert_eq!(
        (report["inserted"].as_u64(), report["updated"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(app.get_json("/api/v1/locations/EDDB").await["name"], "BER");
    app.stop().await;
}

#[tokio::test]
async fn an_import_needs_admin_scope_and_csv() {
    let app = TestApp::spawn().await;
    let reader = app.create_token(&["read"], None).await;
    let response = app
        .client
        .post(app.url("/api/v1/locations/import"))
        .bearer_auth(&reader)
        .header("content-type", "text/csv")
        .body("id,lat,lon\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (status, error) = error_of(
        app.post_raw("/api/v1/locations/import", "application/json", "{}")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["details"][0]["path"], "content-type");
    let (status, error) = error_of(
        app.post_raw(
            "/api/v1/locations/import",
            "text/csv",
            b"id,lat,lon\n1,\xff\xfe,2\n".to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    app.stop().await;
}

/// 30,000 generated rows; the time is printed (the figure of record is the release benchmark).
#[tokio::test]
async fn a_large_generated_file_is_imported_completely() {
    let app = TestApp::spawn().await;
    let mut file = String::from("id,name,city,country,lat,lon,altitude,tz\n");
    for index in 0..30_000 {
        let latitude = -60.0 + (index % 1200) as f64 * 0.1;
        let longitude = -179.0 + (index / 1200) as f64 * 0.5;
        file.push_str(&format!(
            "gen-{index},Station {index},City {},Country {},{latitude},{longitude},{},UTC\n",
            index % 97,
            index % 13,
            index % 3000
        ));
    }
    let started = Instant::now();
    let report = import(&app, file.clone().into_bytes()).await;
    eprintln!(
        "imported 30000 rows in {:?} (debug build)",
        started.elapsed()
    );
    assert_eq!(report["inserted"], 30_000);
    assert_eq!(report["rejected"], 0);
    let page = app.get_json("/api/v1/locations?limit=10000").await;
    assert_eq!(page["count"], 10_000);
    let stored = app.get_json("/api/v1/locations/gen-29999").await;
    assert_eq!(stored["name"], "Station 29999");
    let again = import(&app, file.into_bytes()).await;
    assert_eq!(again["unchanged"], 30_000);
    app.stop().await;
}
