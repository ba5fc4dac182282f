//! Hospitals as firmware under QEMU send the same bytes as in-process
//! hospitals.
//!
//! These tests need `qemu-system-arm` and the thumbv7em-none-eabihf and
//! thumbv6m-none-eabi targets, and build firmware-sim images, so they are
//! ignored by default. Run them with
//! `cargo test -p host --test qemu -- --ignored`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use fedcore::model;
use fedcore::wire::{self, FrameKind};
use fedcore::Params;
use fedcore_host::compare::{self, CompareConfig, Devices};
use fedcore_host::data::{self, HospitalData, Source};
use fedcore_host::device::{Device, DeviceError, Hospital};
use fedcore_host::qemu::{DeviceSettings, Firmware, Image, QemuDevice, Shutdown, Target};
use fedcore_host::server::{Participation, Server};

const SEED: u64 = 11;
const ROUNDS: u32 = 2;
const LOCAL_EPOCHS: u16 = 2;
/// RAM that a device serving the default model may use: statics plus the
/// stack's high-water mark, as the firmware reports them when it stops.
const RAM_BUDGET: usize = 64 * 1024;

type Log = Rc<RefCell<Vec<(String, Vec<u8>, Vec<u8>)>>>;

/// Records every request and reply of one device.
struct Recorder<D> {
    inner: Rc<RefCell<D>>,
    name: String,
    log: Log,
}

impl<D: Device> Device for Recorder<D> {
    fn name(&self) -> &str {
        &self.name
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let reply = self.inner.borrow_mut().exchange(request)?;
        self.log
            .borrow_mut()
            .push((self.name.clone(), request.to_vec(), reply.clone()));
        Ok(reply)
    }
}

fn settings(client: u32) -> DeviceSettings {
    DeviceSettings {
        seed: SEED,
        client,
        train: fedcore::TrainConfig::default(),
    }
}

/// Starts `image`, built from `data`, as the device with client id `client`.
fn spawn(image: &Image, data: &HospitalData, client: u32) -> QemuDevice {
    let timeout = fedcore_host::qemu::reply_timeout(image.target, data.train.len(), LOCAL_EPOCHS);
    QemuDevice::spawn(data.name.clone(), image, &settings(client), timeout).unwrap()
}

/// Runs a short federated session over `devices` and returns the final
/// global model.
fn run_session(devices: Vec<Box<dyn Device>>, features: usize) -> Params<20, 64, 32> {
    let mut server = Server::<20>::new(
        devices,
        features,
        model::glorot_uniform_padded(SEED, features),
    );
    server.standardize().expect("standardisation succeeds");
    for round in 1..=ROUNDS {
        let outcome = server.train_round(round, LOCAL_EPOCHS, &[true; 3]);
        for state in &outcome.participation {
            assert!(
                matches!(state, Participation::Averaged { .. }),
                "round {round}: {state:?}"
            );
        }
        for metrics in server.evaluate_all(round) {
            metrics.expect("evaluation succeeds");
        }
    }
    *server.global()
}

fn kind(frame: &[u8]) -> FrameKind {
    wire::peek_header(frame)
        .expect("recorded frames are valid")
        .kind
}

/// Reads the number after `label` in the firmware's closing line.
fn reported(shutdown: &Shutdown, label: &str) -> Option<usize> {
    shutdown.stderr.iter().find_map(|line| {
        let (_, rest) = line.split_once(label)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[test]
#[ignore = "needs qemu-system-arm and builds firmware; run with --ignored"]
fn qemu_session_matches_in_process_bytes() {
    let source = data::builtin_hospitals(SEED, 0.2);
    let features = source.feature_count();
    let firmware = Firmware::locate().unwrap();

    let expected_log: Log = Rc::default();
    let mut in_process: Vec<Box<dyn Device>> = Vec::new();
    for (index, data) in source.hospitals.iter().enumerate() {
        let client = index as u32 + 1;
        let hospital =
            Hospital::<20>::new(client, data.clone(), fedcore::TrainConfig::default(), SEED)
                .unwrap();
        in_process.push(Box::new(Recorder {
            inner: Rc::new(RefCell::new(hospital)),
            name: data.name.clone(),
            log: Rc::clone(&expected_log),
        }));
    }

    // The last hospital runs the Cortex-M0 image: soft float must give the
    // bits of the host and of the Cortex-M4F's FPU.
    let targets = [Target::CortexM4F, Target::CortexM4F, Target::CortexM0];
    assert_eq!(targets.len(), source.hospitals.len());
    let actual_log: Log = Rc::default();
    let mut qemu_devices = Vec::new();
    let mut on_qemu: Vec<Box<dyn Device>> = Vec::new();
    for (index, (data, target)) in source.hospitals.iter().zip(targets).enumerate() {
        let client = index as u32 + 1;
        let image = firmware
            .clone()
            .with_target(target)
            .build_from_rows(client as usize, data)
            .unwrap();
        let device = spawn(&image, data, client);
        let device = Rc::new(RefCell::new(device));
        qemu_devices.push(Rc::clone(&device));
        on_qemu.push(Box::new(Recorder {
            inner: device,
            name: data.name.clone(),
            log: Rc::clone(&actual_log),
        }));
    }

    let expected_model = run_session(in_process, features);
    let actual_model = run_session(on_qemu, features);

    let expected = expected_log.borrow();
    let actual = actual_log.borrow();
    // 3 hospitals × (stats + standardize + rounds × (train + evaluate)).
    assert_eq!(expected.len(), 3 * (2 + 2 * ROUNDS as usize));
    assert_eq!(actual.len(), expected.len());
    let mut updates = 0;
    for (index, (want, got)) in expected.iter().zip(actual.iter()).enumerate() {
        let (name, request, reply) = want;
        let context = format!("exchange {index}: {name}, {} request", kind(request));
        assert_eq!(&got.0, name, "{context}: sent to another hospital");
        assert!(got.1 == *request, "{context}: requests differ");
        assert_eq!(kind(&got.2), kind(reply), "{context}: reply kinds differ");
        assert!(got.2 == *reply, "{context}: {} replies differ", kind(reply));
        if kind(reply) == FrameKind::Update {
            updates += 1;
        }
    }
    assert_eq!(updates, 3 * ROUNDS as usize);
    let expected_bits: Vec<u32> = expected_model.iter().map(|value| value.to_bits()).collect();
    let actual_bits: Vec<u32> = actual_model.iter().map(|value| value.to_bits()).collect();
    assert!(expected_bits == actual_bits, "final global models differ");

    for device in qemu_devices {
        let device = Rc::try_unwrap(device)
            .ok()
            .expect("the server has been dropped")
            .into_inner();
        let shutdown = device.shutdown();
        assert!(
            shutdown.status.is_some_and(|status| status.success()),
            "firmware did not exit cleanly: {shutdown:?}"
        );
        eprintln!("{}", shutdown.stderr.join("\n"));
        let statics = reported(&shutdown, "static RAM ").expect("the firmware reports statics");
        let stack =
            reported(&shutdown, "stack high-water ").expect("the firmware reports its stack");
        // The trainer alone is 56,016 bytes, so less means a bad reading.
        assert!(statics > 56_016, "static RAM reads {statics} bytes");
        assert!(
            statics + stack <= RAM_BUDGET,
            "serving the default model used {statics} bytes of statics and {stack} of stack, over {RAM_BUDGET}"
        );
    }
}

/// Runs `compare` with few rounds and epochs on `devices`.
fn short_compare(source: &Source, devices: Devices) -> compare::Comparison {
    let config = CompareConfig {
        rounds: ROUNDS,
        local_epochs: 1,
        baseline_epochs: 1,
        dropout_rounds: 1,
        dropout_local_epochs: 1,
        seed: SEED,
        devices,
        ..CompareConfig::default()
    };
    compare::run(source, &config, &mut |_| {}).unwrap()
}

#[test]
#[ignore = "needs qemu-system-arm and builds firmware; run with --ignored"]
fn compare_on_qemu_matches_in_process() {
    // The heart-disease data has missing values and 13 features, so this
    // also covers imputation and a padded 16-input model.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/heart-disease");
    let options = data::CsvOptions {
        missing: Some("?".to_owned()),
        seed: SEED,
        ..data::CsvOptions::default()
    };
    let source = data::load(&[path], &options).unwrap();
    let expected = short_compare(&source, Devices::InProcess);
    let actual = short_compare(&source, Devices::Qemu);
    assert_eq!(actual.federated_rounds, expected.federated_rounds);
}

#[test]
#[ignore = "needs qemu-system-arm and builds firmware; run with --ignored"]
fn builtin_image_matches_in_process_stats() {
    let source = data::builtin_hospitals(SEED, 0.2);
    let data = &source.hospitals[1];
    let kernel = Firmware::locate()
        .unwrap()
        .build_builtin(2, SEED, 0.2)
        .unwrap();
    let mut device = spawn(&kernel, data, 2);
    let mut hospital =
        Hospital::<20>::new(2, data.clone(), fedcore::TrainConfig::default(), SEED).unwrap();

    let mut request = vec![0; wire::frame_capacity::<20, 64, 32>()];
    let len = wire::encode_stats_request::<20, 64, 32>(&mut request, 2).unwrap();
    let expected = hospital.exchange(&request[..len]).unwrap();
    let actual = device.exchange(&request[..len]).unwrap();
    assert!(actual == expected, "feature statistics differ");
    let shutdown = device.shutdown();
    assert!(shutdown.status.is_some_and(|status| status.success()));
}

#[test]
#[ignore = "needs qemu-system-arm and builds firmware; run with --ignored"]
fn device_failures_become_errors() {
    let source = data::builtin_hospitals(SEED, 0.2);
    let data = &source.hospitals[2];
    let kernel = Firmware::locate()
        .unwrap()
        .build_from_rows(3, data)
        .unwrap();
    let initial: Params<20, 64, 32> = model::glorot_uniform(SEED);
    let mut frame = vec![0; wire::frame_capacity::<20, 64, 32>()];

    // A corrupted frame: the firmware rejects it and exits with status 3.
    let mut device = spawn(&kernel, data, 3);
    let len = wire::encode_evaluate(&mut frame, 1, 3, &initial).unwrap();
    frame[len / 2] ^= 0x55;
    let error = device.exchange(&frame[..len]).unwrap_err().to_string();
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.contains("frame corrupted"), "{error}");
    let again = device.exchange(&frame[..len]).unwrap_err().to_string();
    assert!(again.contains("device stopped earlier"), "{again}");

    // Training before the standardisation: a state error, status 4.
    let mut device = spawn(&kernel, data, 3);
    let len = wire::encode_train(&mut frame, 1, 3, 1, &initial).unwrap();
    let error = device.exchange(&frame[..len]).unwrap_err().to_string();
    assert!(error.contains("exit status: 4"), "{error}");
    assert!(error.contains("standardisation"), "{error}");

    // A reply that misses its timeout: QEMU is killed.
    let mut device = QemuDevice::spawn(
        data.name.clone(),
        &kernel,
        &settings(3),
        Duration::from_millis(1),
    )
    .unwrap();
    let len = wire::encode_stats_request::<20, 64, 32>(&mut frame, 3).unwrap();
    let error = device.exchange(&frame[..len]).unwrap_err().to_string();
    assert!(error.contains("timed out"), "{error}");
}
