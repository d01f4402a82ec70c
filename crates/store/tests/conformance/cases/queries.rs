//! Reading queries: filters, both orders, limits, keyset cursors, paging during inserts.

use audrey_model::{LocationId, Millis, SensorId};
use audrey_store::{Order, ReadingQuery};

use crate::harness::{
    BASE, DAY, Harness, accepted, all_pages, append, everything, fleet, read_ats, reading,
};

/// 40 readings: for each of 10 steps (spread over 3 days), one per sensor.
fn forty(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let mut batch = Vec::new();
    for step in 0..10 {
        for sensor in ["a1", "a2", "b1", "b2"] {
            batch.push(reading(sensor, BASE + step * (DAY / 4), None));
        }
    }
    append(store, batch);
}

pub fn queries_filter_by_sensor_location_and_time(harness: &Harness) {
    forty(harness);
    let store = &*harness.store;
    let by_sensor = ReadingQuery {
        sensor: Some(SensorId::parse("a2").unwrap()),
        ..everything(Order::Oldest)
    };
    let found = all_pages(store, &by_sensor, 100);
    assert_eq!(found.len(), 10);
    assert!(
        found
            .iter()
            .all(|reading| reading.sensor_id.as_str() == "a2")
    );
    let by_location = ReadingQuery {
        location: Some(LocationId::parse("site-b").unwrap()),
        ..everything(Order::Oldest)
    };
    let found = all_pages(store, &by_location, 100);
    assert_eq!(found.len(), 20);
    assert!(
        found
            .iter()
            .all(|reading| reading.location_id.as_str() == "site-b")
    );
    // from is inclusive, to exclusive.
    let window = ReadingQuery {
        sensor: Some(SensorId::parse("b1").unwrap()),
        from: Some(Millis(BASE + DAY / 4)),
        to: Some(Millis(BASE + DAY)),
        ..everything(Order::Oldest)
    };
    assert_eq!(
        read_ats(&all_pages(store, &window, 100)),
        [BASE + DAY / 4, BASE + DAY / 2, BASE + 3 * DAY / 4]
    );
    let both = ReadingQuery {
        sensor: Some(SensorId::parse("a1").unwrap()),
        location: Some(LocationId::parse("site-b").unwrap()),
        ..everything(Order::Newest)
    };
    assert!(store.readings(&both).unwrap().items.is_empty());
    harness.settle();
    assert_eq!(
        all_pages(store, &by_location, 100).len(),
        20,
        "same after settling"
    );
}

pub fn both_orders_sort_by_read_at_then_id(harness: &Harness) {
    forty(harness);
    let store = &*harness.store;
    let oldest = all_pages(store, &everything(Order::Oldest), 1000);
    let newest = all_pages(store, &everything(Order::Newest), 1000);
    assert_eq!(oldest.len(), 40);
    let keys = |readings: &[audrey_model::Reading]| -> Vec<(Millis, audrey_model::ReadingId)> {
        readings
            .iter()
            .map(|reading| (reading.read_at, reading.id))
            .collect()
    };
    let mut sorted = keys(&oldest);
    sorted.sort();
    assert_eq!(keys(&oldest), sorted, "oldest first by (read_at, id)");
    sorted.reverse();
    assert_eq!(keys(&newest), sorted, "newest first is the exact reverse");
    let limited = store
        .readings(&ReadingQuery {
            limit: 3,
            ..everything(Order::Newest)
        })
        .unwrap();
    assert_eq!(keys(&limited.items), sorted[..3]);
    assert!(limited.next_cursor.is_some());
}

pub fn cursor_pages_cover_every_reading_once(harness: &Harness) {
    forty(harness);
    let store = &*harness.store;
    for order in [Order::Oldest, Order::Newest] {
        let whole = all_pages(store, &everything(order), 1000);
        for page in [1, 3, 7, 40] {
            let paged = all_pages(store, &everything(order), page);
            assert_eq!(
                paged.iter().map(|r| r.id).collect::<Vec<_>>(),
                whole.iter().map(|r| r.id).collect::<Vec<_>>(),
                "{order:?} in pages of {page}"
            );
        }
        let windowed = ReadingQuery {
            sensor: Some(SensorId::parse("a1").unwrap()),
            from: Some(Millis(BASE + DAY / 2)),
            to: Some(Millis(BASE + 2 * DAY)),
            ..everything(order)
        };
        assert_eq!(all_pages(store, &windowed, 2).len(), 6, "{order:?}");
    }
    harness.settle();
    assert_eq!(all_pages(store, &everything(Order::Newest), 6).len(), 40);
}

pub fn paging_while_newer_readings_arrive_misses_and_repeats_nothing(harness: &Harness) {
    forty(harness);
    let store = &*harness.store;
    let before = all_pages(store, &everything(Order::Newest), 1000);
    let mut query = ReadingQuery {
        limit: 6,
        ..everything(Order::Newest)
    };
    let mut seen = Vec::new();
    let mut step = 0;
    loop {
        let page = store.readings(&query).unwrap();
        seen.extend(page.items.iter().map(|reading| reading.id));
        // Newer readings (and one older than everything) arrive between pages.
        append(
            store,
            vec![
                reading("a1", BASE + 10 * DAY + step, None),
                reading("b1", BASE + 10 * DAY + step, None),
            ],
        );
        if step == 2 {
            harness.settle();
        }
        step += 1;
        match page.next_cursor {
            Some(cursor) => query.after = Some(audrey_store::Cursor::decode(&cursor).unwrap()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        before.iter().map(|reading| reading.id).collect::<Vec<_>>(),
        "every reading that existed when paging began, once, in order"
    );
}

/// The act engine's replay walks readings by id after a point. Half the readings are moved
/// into the indexed layout and half stay landed (SQLite's memtable), and read_at order is the
/// reverse of id order, so a walk that followed read_at or missed either half would fail.
pub fn readings_after_an_id_come_in_id_order_each_once(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let mut ids = Vec::new();
    for (round, sensor) in ["a1", "b2"].into_iter().enumerate() {
        let batch: Vec<_> = (0..10)
            .map(|step| reading(sensor, BASE + DAY - (round as i64 * 10 + step) * 1000, None))
            .collect();
        ids.extend(accepted(&append(store, batch)));
        if round == 0 {
            harness.settle();
        }
    }
    ids.sort();
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store.readings_after_id(after, 3).unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        walked.extend(page.iter().map(|reading| reading.id));
    }
    assert_eq!(walked, ids);
    let tail: Vec<_> = store
        .readings_after_id(Some(ids[14]), 100)
        .unwrap()
        .iter()
        .map(|reading| reading.id)
        .collect();
    assert_eq!(tail, ids[15..]);
    let newest = store.readings_after_id(Some(ids[19]), 100).unwrap();
    assert!(newest.is_empty());
}
