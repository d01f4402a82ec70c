//! What makes a query answer right: each is checked, not just timed.
//!
//! A refusal, an empty answer or another sensor's readings come back fast; a benchmark that
//! counted them as successes would report a fast server that answers nothing. These checks are
//! pure functions of the asked question and the readings that came back.

use audrey_proto::v1::{Order, Reading};

/// What a "first N of one sensor" call asked for.
#[derive(Clone, Copy, Debug)]
pub struct ListQuestion<'a> {
    pub sensor_id: &'a str,
    pub order: Order,
    pub limit: u64,
}

/// Accepts between 1 and `limit` readings, all of the asked-for sensor, in the asked-for order.
/// Returns how many there were.
pub fn check_sensor_list(question: ListQuestion<'_>, readings: &[Reading]) -> Result<u64, String> {
    let sensor_id = question.sensor_id;
    if readings.is_empty() {
        return Err(format!(
            "{sensor_id}: no readings; preload the bench fleet before the query benchmark"
        ));
    }
    if readings.len() as u64 > question.limit {
        return Err(format!(
            "{sensor_id}: {} readings for a limit of {}",
            readings.len(),
            question.limit
        ));
    }
    if let Some(stranger) = readings
        .iter()
        .find(|reading| reading.sensor_id != sensor_id)
    {
        return Err(format!(
            "{sensor_id}: the answer holds a reading of {}",
            stranger.sensor_id
        ));
    }
    check_order(question.order, readings).map_err(|problem| format!("{sensor_id}: {problem}"))?;
    Ok(readings.len() as u64)
}

/// Readings of a list answer must follow its order by `read_at`; ties are allowed.
pub fn check_order(order: Order, readings: &[Reading]) -> Result<(), String> {
    let out_of_order = readings.windows(2).position(|pair| match order {
        Order::Oldest => pair[0].read_at_ms > pair[1].read_at_ms,
        Order::Newest => pair[0].read_at_ms < pair[1].read_at_ms,
    });
    match out_of_order {
        Some(index) => Err(format!(
            "readings {index} and {} are not {} first ({} then {})",
            index + 1,
            match order {
                Order::Oldest => "oldest",
                Order::Newest => "newest",
            },
            readings[index].read_at_ms,
            readings[index + 1].read_at_ms
        )),
        None => Ok(()),
    }
}

/// A range scan's readings must lie inside `[from_ms, to_ms)`.
pub fn check_in_range(from_ms: i64, to_ms: i64, readings: &[Reading]) -> Result<(), String> {
    match readings
        .iter()
        .find(|reading| reading.read_at_ms < from_ms || reading.read_at_ms >= to_ms)
    {
        Some(outside) => Err(format!(
            "reading {} read at {} lies outside [{from_ms}, {to_ms})",
            outside.id, outside.read_at_ms
        )),
        None => Ok(()),
    }
}

/// `GetReading` must answer with the reading it was asked for.
pub fn check_reading_by_id(asked_id: &str, reading: &Reading) -> Result<(), String> {
    if reading.id == asked_id {
        Ok(())
    } else {
        Err(format!(
            "asked for reading {asked_id}, got {:?}",
            reading.id
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor_id: &str, read_at_ms: i64) -> Reading {
        Reading {
            id: format!("id-{read_at_ms}"),
            sensor_id: sensor_id.to_string(),
            read_at_ms,
            ..Reading::default()
        }
    }

    fn question(order: Order, limit: u64) -> ListQuestion<'static> {
        ListQuestion {
            sensor_id: "bench-00001",
            order,
            limit,
        }
    }

    #[test]
    fn a_full_answer_of_the_right_sensor_in_order_counts() {
        let newest = [reading("bench-00001", 3), reading("bench-00001", 2)];
        assert_eq!(
            check_sensor_list(question(Order::Newest, 2), &newest),
            Ok(2)
        );
        let oldest = [reading("bench-00001", 2), reading("bench-00001", 2)];
        assert_eq!(
            check_sensor_list(question(Order::Oldest, 5), &oldest),
            Ok(2)
        );
    }

    #[test]
    fn an_empty_answer_is_an_error_that_says_to_preload() {
        let problem = check_sensor_list(question(Order::Newest, 10), &[]).unwrap_err();
        assert!(problem.contains("preload"), "{problem}");
    }

    #[test]
    fn too_many_readings_another_sensor_or_the_wrong_order_are_errors() {
        let three = [
            reading("bench-00001", 1),
            reading("bench-00001", 2),
            reading("bench-00001", 3),
        ];
        assert!(check_sensor_list(question(Order::Oldest, 2), &three).is_err());
        assert!(check_sensor_list(question(Order::Newest, 3), &three).is_err());
        let stranger = [reading("bench-00001", 1), reading("bench-00002", 2)];
        assert!(check_sensor_list(question(Order::Oldest, 5), &stranger).is_err());
    }

    #[test]
    fn a_range_scan_answer_must_stay_inside_its_range() {
        let readings = [reading("a", 10), reading("b", 19)];
        assert!(check_in_range(10, 20, &readings).is_ok());
        assert!(check_in_range(11, 20, &readings).is_err());
        assert!(check_in_range(10, 19, &readings).is_err());
    }

    #[test]
    fn get_reading_must_answer_the_asked_id() {
        let answer = reading("a", 7);
        assert!(check_reading_by_id("id-7", &answer).is_ok());
        assert!(check_reading_by_id("id-8", &answer).is_err());
    }
}
