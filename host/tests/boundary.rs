//! Only frames cross between a hospital and the server, and no row is in
//! them.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use fedcore::model;
use fedcore::wire::{self, FrameKind};
use fedcore_host::data;
use fedcore_host::device::{Device, DeviceError, Hospital};
use fedcore_host::server::{Participation, Server};

type Log = Rc<RefCell<Vec<(Vec<u8>, Vec<u8>)>>>;

/// Records every request and reply that crosses the boundary.
struct Recorder {
    inner: Box<dyn Device>,
    log: Log,
}

impl Device for Recorder {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let reply = self.inner.exchange(request)?;
        self.log
            .borrow_mut()
            .push((request.to_vec(), reply.clone()));
        Ok(reply)
    }
}

#[test]
fn no_row_crosses_the_boundary() {
    let source = data::builtin_hospitals(3, 0.2);
    let log: Log = Rc::default();
    let devices: Vec<Box<dyn Device>> = source
        .hospitals
        .iter()
        .enumerate()
        .map(|(index, hospital)| {
            let hospital = Hospital::<20>::new(
                index as u32 + 1,
                hospital.clone(),
                fedcore::TrainConfig::default(),
                3,
            )
            .unwrap();
            Box::new(Recorder {
                inner: Box::new(hospital),
                log: Rc::clone(&log),
            }) as Box<dyn Device>
        })
        .collect();
    let mut server = Server::<20>::new(devices, 20, model::glorot_uniform(3));
    server.standardize().unwrap();
    for round in 1..=2 {
        let outcome = server.train_round(round, 1, &[true, true, true]);
        assert!(outcome
            .participation
            .iter()
            .all(|state| matches!(state, Participation::Averaged { .. })));
        assert!(server.evaluate_all(round).iter().all(Result::is_ok));
    }

    let log = log.borrow();
    // 3 hospitals × (stats + standardize + 2 × (train + evaluate)).
    assert_eq!(log.len(), 3 * 6);

    // Every message is one well-formed frame of an expected kind, and
    // hospitals send only statistics, updates and metrics.
    let allowed_replies = [
        FrameKind::FeatureStats,
        FrameKind::Update,
        FrameKind::Metrics,
    ];
    let update_len = wire::frame_capacity::<20, 64, 32>();
    let mut windows = HashSet::new();
    for (request, reply) in log.iter() {
        assert!(wire::peek_header(request).is_ok());
        let header = wire::peek_header(reply).unwrap();
        assert!(allowed_replies.contains(&header.kind), "{:?}", header.kind);
        assert!(reply.len() <= update_len, "reply of {} bytes", reply.len());
        for message in [request, reply] {
            for window in message.windows(8) {
                windows.insert(<[u8; 8]>::try_from(window).unwrap());
            }
        }
    }

    // No training or test row appears in any message: neither a raw f64
    // feature value nor two consecutive standardised f32 features.
    for hospital in &source.hospitals {
        for row in hospital
            .train
            .features
            .iter()
            .chain(&hospital.test.features)
        {
            for value in row {
                assert!(
                    !windows.contains(&value.to_le_bytes()),
                    "raw value {value} crossed"
                );
            }
            let first = (row[0] as f32).to_le_bytes();
            let second = (row[1] as f32).to_le_bytes();
            let pair: [u8; 8] = [first, second].concat().try_into().unwrap();
            assert!(!windows.contains(&pair), "row features crossed");
        }
    }
}

/// A device that always fails, as a crashed hospital would.
struct Broken;

impl Device for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    fn exchange(&mut self, _request: &[u8]) -> Result<Vec<u8>, DeviceError> {
        Err(DeviceError::State("device crashed".to_owned()))
    }
}

/// A device that answers with a corrupted copy of a real reply.
struct Corrupting(Box<dyn Device>);

impl Device for Corrupting {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let mut reply = self.0.exchange(request)?;
        if wire::peek_header(&reply).map(|h| h.kind) == Ok(FrameKind::Update) {
            let middle = reply.len() / 2;
            reply[middle] ^= 0x10;
        }
        Ok(reply)
    }
}

#[test]
fn failed_devices_are_left_out_of_the_round() {
    let source = data::builtin_hospitals(4, 0.2);
    let make = |index: usize| -> Box<dyn Device> {
        Box::new(
            Hospital::<20>::new(
                index as u32 + 1,
                source.hospitals[index].clone(),
                fedcore::TrainConfig::default(),
                4,
            )
            .unwrap(),
        )
    };
    let devices: Vec<Box<dyn Device>> = vec![make(0), Box::new(Corrupting(make(1))), make(2)];
    let initial = model::glorot_uniform(4);
    let mut server = Server::<20>::new(devices, 20, initial);
    server.standardize().unwrap();

    let outcome = server.train_round(1, 1, &[true, true, true]);
    assert!(matches!(
        outcome.participation[0],
        Participation::Averaged { rows: 800 }
    ));
    match &outcome.participation[1] {
        Participation::Failed(reason) => assert!(reason.contains("corrupted"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        outcome.participation[2],
        Participation::Averaged { rows: 480 }
    ));
    assert!(!outcome.kept_previous);
    assert_ne!(server.global(), &initial);

    // A round whose only participant fails keeps the previous model.
    let before = *server.global();
    let outcome = server.train_round(2, 1, &[false, true, false]);
    assert!(outcome.kept_previous);
    assert_eq!(server.global(), &before);
}

#[test]
fn broken_device_stops_setup_with_its_name() {
    let source = data::builtin_hospitals(4, 0.2);
    let hospital = Hospital::<20>::new(
        1,
        source.hospitals[0].clone(),
        fedcore::TrainConfig::default(),
        4,
    )
    .unwrap();
    let devices: Vec<Box<dyn Device>> = vec![Box::new(hospital), Box::new(Broken)];
    let mut server = Server::<20>::new(devices, 20, model::glorot_uniform(4));
    let error = server.standardize().unwrap_err().to_string();
    assert!(
        error.contains("broken") && error.contains("device crashed"),
        "{error}"
    );
}

#[test]
fn hospital_rejects_garbage_and_keeps_working() {
    let source = data::builtin_hospitals(5, 0.2);
    let mut hospital = Hospital::<20>::new(
        1,
        source.hospitals[0].clone(),
        fedcore::TrainConfig::default(),
        5,
    )
    .unwrap();
    for garbage in [&b""[..], b"\x05hello", &[0xff; 40]] {
        assert!(matches!(
            hospital.exchange(garbage),
            Err(DeviceError::Decode(_))
        ));
    }
    // Training before the standardisation arrived is a state error.
    let mut buffer = vec![0u8; wire::frame_capacity::<20, 64, 32>()];
    let params = model::glorot_uniform::<20, 64, 32>(5);
    let len = wire::encode_train(&mut buffer, 1, 1, 1, &params).unwrap();
    assert!(matches!(
        hospital.exchange(&buffer[..len]),
        Err(DeviceError::State(_))
    ));
}
