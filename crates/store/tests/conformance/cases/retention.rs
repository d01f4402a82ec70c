//! Retention and very old readings.

use audrey_model::{EARLIEST_READ_AT, Millis};
use audrey_store::{Order, ReadingQuery};

use crate::harness::{BASE, DAY, Harness, accepted, all_pages, append, everything, fleet, reading};

pub fn retention_removes_readings_before_the_cutoff_and_keeps_the_rest(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let old: Vec<_> = (0..5)
        .flat_map(|day| {
            [
                reading("a1", BASE - (day + 1) * DAY, Some(&format!("old-{day}"))),
                reading("b1", BASE - (day + 1) * DAY + DAY / 2, None),
            ]
        })
        .collect();
    append(store, old);
    harness.settle();
    let young = accepted(&append(
        store,
        vec![
            reading("a1", BASE, None),
            reading("a1", BASE + DAY / 3, None),
            reading("b2", BASE + 2 * DAY, None),
            // Landed but not yet moved by maintenance on SQLite: retention reaches it too.
            reading("b2", BASE - 8 * DAY, None),
        ],
    ));
    let cutoff = Millis(BASE);
    let mut removed = 0;
    loop {
        let step = store.retain(cutoff, 3).unwrap();
        if step == 0 {
            break;
        }
        removed += step;
    }
    assert!(
        removed >= 11,
        "at least the 11 old readings went: {removed}"
    );
    let left = all_pages(store, &everything(Order::Oldest), 100);
    assert_eq!(
        left.iter().map(|r| r.id).collect::<Vec<_>>(),
        young[..3].to_vec(),
        "exactly the readings at or after the cutoff remain"
    );
    assert!(store.reading(young[3]).unwrap().is_none());
    assert_eq!(store.retain(cutoff, 3).unwrap(), 0, "nothing left to do");
    // After retention the store keeps working for the days it dropped.
    let again = accepted(&append(store, vec![reading("a1", BASE - DAY, None)]));
    assert_eq!(
        store.reading(again[0]).unwrap().unwrap().read_at.0,
        BASE - DAY
    );
}

pub fn readings_from_the_year_2000_are_stored_and_queried(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let ids = accepted(&append(
        store,
        vec![
            reading("a1", EARLIEST_READ_AT.0, Some("y2k")),
            reading("a1", EARLIEST_READ_AT.0 + 400 * DAY, None),
            reading("a1", BASE, None),
        ],
    ));
    assert_eq!(ids.len(), 3);
    let oldest = store
        .readings(&ReadingQuery {
            limit: 2,
            ..everything(Order::Oldest)
        })
        .unwrap();
    assert_eq!(oldest.items[0].id, ids[0]);
    assert_eq!(oldest.items[1].id, ids[1]);
    harness.settle();
    assert_eq!(
        store.reading(ids[0]).unwrap().unwrap().read_at,
        EARLIEST_READ_AT
    );
}
