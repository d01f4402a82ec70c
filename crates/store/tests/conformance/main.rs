//! One conformance suite for every storage backend: each case in `cases/` is a plain function
//! over a [`harness::Harness`]; the macro below instantiates every case once per backend.
//!
//! PostgreSQL cases run when `AUDREY_TEST_POSTGRES_URL` names a server (each test creates a
//! fresh database and drops it afterwards); without it they print a notice and pass, unless
//! `CI` is set, where a missing database is a failure.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod cases;
mod harness;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    let harness = crate::harness::sqlite();
                    crate::cases::$case(&harness);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    let Some(harness) = crate::harness::postgres() else {
                        return;
                    };
                    crate::cases::$case(&harness);
                }
            )*
        }
    };
}

conformance!(
    locations_are_created_replaced_listed_and_soft_deleted,
    sensors_need_a_live_location_and_are_soft_deleted,
    tokens_are_stored_found_and_revoked,
    appended_readings_read_back_by_id_with_counters,
    a_reading_answered_without_waiting_is_the_one_reading_answers,
    a_message_id_repeated_in_one_batch_is_stored_once,
    a_message_id_repeated_in_a_later_batch_is_a_duplicate,
    concurrent_batches_with_the_same_keys_store_each_key_once,
    dedup_holds_after_maintenance_moved_the_original,
    readings_without_message_ids_are_never_deduplicated,
    queries_filter_by_sensor_location_and_time,
    both_orders_sort_by_read_at_then_id,
    cursor_pages_cover_every_reading_once,
    paging_while_newer_readings_arrive_misses_and_repeats_nothing,
    quarantine_lists_newest_first_by_sensor_and_counts_rejections,
    assigned_ids_are_kept,
    replaying_a_batch_with_its_assigned_ids_stores_nothing_twice,
    retention_removes_readings_before_the_cutoff_and_keeps_the_rest,
    readings_from_the_year_2000_are_stored_and_queried,
    readings_after_an_id_come_in_id_order_each_once,
);
