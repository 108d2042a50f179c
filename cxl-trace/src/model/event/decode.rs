//! Decoding ring buffer records into [`Event`]s: one function per [`Kind`], each reading its
//! wire struct with bytemuck.

use std::mem::size_of;

use cxl_trace_common::{
    decision_stage, isolate, DemoteBatchEvent, EventHeader, FaultEvent, FaultLatencyEvent,
    FolioMigrateEvent, Kind, MigrateEvent, MigrateStartEvent, MigrationPteEvent, NumaFaultEvent,
    PromoteDecisionEvent, RawTpEvent,
};

use super::*;

/// Classifies a decision record (pure: the rules are documented in `cxl-trace-ebpf/src/promote.rs`).
pub fn verdict(e: &PromoteDecisionEvent) -> Verdict {
    match e.stage {
        decision_stage::SHOULD_MIGRATE if e.result != 0 => Verdict::Approved,
        decision_stage::SHOULD_MIGRATE if e.candidate_pages > 0 => Verdict::RefusedRateLimit,
        decision_stage::SHOULD_MIGRATE => Verdict::RefusedThreshold,
        _ if e.result == 0 => Verdict::Prepared,
        _ if e.result == -libc::EACCES => Verdict::RefusedSharedExec,
        _ if e.isolate == isolate::FAILED => Verdict::RefusedIsolation,
        _ => Verdict::RefusedTargetFull,
    }
}

fn some_unless<T: PartialEq>(v: T, none: T) -> Option<T> {
    (v != none).then_some(v)
}

/// Why a record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than the struct its kind names.
    #[error("record of kind {kind} is {len} bytes, expected at least {need}")]
    Short {
        /// Kind from the header (0 when even the header is cut).
        kind: u16,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An unknown kind (a newer eBPF object than this decoder).
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    /// A count no kernel can produce (a damaged or crafted file): left out rather than summed.
    #[error("record of kind {kind}: {field} = {value} pages is beyond any machine")]
    Implausible {
        /// Kind from the header.
        kind: u16,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Most pages one record can count: 2^40 pages of 4 KiB are 4 PiB, beyond any machine. Larger
/// counts come only from damaged or crafted files, and summing them could overflow.
pub const MAX_PAGES: u64 = 1 << 40;

fn plausible(kind: u16, fields: &[(&'static str, u64)]) -> Result<(), DecodeError> {
    match fields.iter().find(|(_, v)| *v > MAX_PAGES) {
        Some(&(field, value)) => Err(DecodeError::Implausible { kind, field, value }),
        None => Ok(()),
    }
}

/// Reads a `T` from the start of `bytes`, which must hold at least `size_of::<T>()` bytes.
fn read<T: bytemuck::AnyBitPattern>(bytes: &[u8], kind: u16) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    let head = bytes.get(..need).ok_or(DecodeError::Short {
        kind,
        len: bytes.len(),
        need,
    })?;
    Ok(bytemuck::pod_read_unaligned(head))
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let hdr: EventHeader = read(bytes, 0)?;
    let Some(k) = Kind::from_u16(hdr.kind) else {
        return Err(DecodeError::UnknownKind(hdr.kind));
    };
    match k {
        Kind::FaultUser | Kind::FaultKernel => fault(&hdr, bytes, k),
        Kind::MigrateStart => migrate_start(&hdr, bytes),
        Kind::Migrate => migrate(&hdr, bytes),
        Kind::FaultLatency => fault_latency(&hdr, bytes),
        Kind::FolioMigrate => folio_migrate(&hdr, bytes),
        Kind::MigrationPte => migration_pte(&hdr, bytes),
        Kind::NumaFault => numa_fault(&hdr, bytes),
        Kind::RawTp => raw_tp(&hdr, bytes),
        Kind::PromoteDecision => promote_decision(&hdr, bytes),
        Kind::DemoteBatch => demote_batch(&hdr, bytes),
    }
}

fn fault(hdr: &EventHeader, bytes: &[u8], k: Kind) -> Result<Event, DecodeError> {
    let e: FaultEvent = read(bytes, hdr.kind)?;
    Ok(Event::Fault(Fault {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        mode: if k == Kind::FaultUser {
            FaultMode::User
        } else {
            FaultMode::Kernel
        },
        address: e.address,
        ip: e.ip,
        error_code: e.error_code,
    }))
}

fn migrate_start(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: MigrateStartEvent = read(bytes, hdr.kind)?;
    Ok(Event::MigrateStart(MigrateStart {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        mode: e.mode,
        reason: MigrateReason::from_raw(e.reason),
    }))
}

fn migrate(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: MigrateEvent = read(bytes, hdr.kind)?;
    plausible(
        hdr.kind,
        &[
            ("succeeded", e.succeeded),
            ("failed", e.failed),
            ("thp_succeeded", e.thp_succeeded),
            ("thp_failed", e.thp_failed),
            ("thp_split", e.thp_split),
            ("large_folio_split", e.large_folio_split),
        ],
    )?;
    Ok(Event::Migrate(MigrateBatch {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        succeeded: e.succeeded,
        failed: e.failed,
        thp_succeeded: e.thp_succeeded,
        thp_failed: e.thp_failed,
        thp_split: e.thp_split,
        large_folio_split: e.large_folio_split,
        mode: e.mode,
        reason: MigrateReason::from_raw(e.reason),
    }))
}

fn fault_latency(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: FaultLatencyEvent = read(bytes, hdr.kind)?;
    Ok(Event::FaultLatency(FaultLatency {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        address: e.address,
        latency_ns: e.latency_ns,
        alloc_pfn: some_unless(e.alloc_pfn, u64::MAX),
        ret: e.ret,
        flags: e.flags,
        numa_node: some_unless(e.numa_node, u32::MAX),
        retries: e.retries,
    }))
}

fn folio_migrate(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: FolioMigrateEvent = read(bytes, hdr.kind)?;
    let (reason, size) = cxl_trace_common::folio_size::unpack(e.reason);
    Ok(Event::FolioMigrate(FolioMigrate {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        src_pfn: some_unless(e.src_pfn, u64::MAX),
        dst_pfn: some_unless(e.dst_pfn, u64::MAX),
        mapping: e.mapping,
        index: e.index,
        copy_ns: some_unless(e.copy_ns, cxl_trace_common::COPY_UNKNOWN),
        pages: cxl_trace_common::folio_size::pages(size),
        rc: e.rc,
        reason: reason.map(MigrateReason::from_raw),
    }))
}

fn migration_pte(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: MigrationPteEvent = read(bytes, hdr.kind)?;
    Ok(Event::MigrationPte(MigrationPte {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        addr: e.addr,
        old_entry: some_unless(e.old_entry, u64::MAX),
        new_entry: e.new_entry,
        unmapped_ns: e.unmapped_ns,
        order: e.order,
        reason: some_unless(e.reason, u32::MAX).map(MigrateReason::from_raw),
        pmd: e.pmd != 0,
    }))
}

fn numa_fault(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: NumaFaultEvent = read(bytes, hdr.kind)?;
    Ok(Event::NumaFault(NumaFault {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        mem_node: e.mem_node,
        pages: e.pages,
        flags: e.flags,
    }))
}

fn raw_tp(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    // The record may be cut to `len` bytes of data; decode the fixed part only.
    let fixed = Kind::RawTp.wire_size();
    let short = |need| DecodeError::Short {
        kind: hdr.kind,
        len: bytes.len(),
        need,
    };
    let head = bytes.get(..fixed).ok_or(short(fixed))?;
    let u16_at = |off: usize| {
        head.get(off..off + 2)
            .map(bytemuck::pod_read_unaligned::<u16>)
            .ok_or(short(fixed))
    };
    let tp = u16_at(std::mem::offset_of!(RawTpEvent, tp))?;
    let len = usize::from(u16_at(std::mem::offset_of!(RawTpEvent, len))?);
    let data = bytes
        .get(fixed..fixed + len)
        .ok_or(short(fixed + len))?
        .to_vec();
    Ok(Event::Raw(RawRecord {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        cpu: hdr.cpu,
        tp,
        data,
    }))
}

fn promote_decision(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: PromoteDecisionEvent = read(bytes, hdr.kind)?;
    plausible(
        hdr.kind,
        &[("candidate_pages", e.candidate_pages.unsigned_abs())],
    )?;
    let should = e.stage == decision_stage::SHOULD_MIGRATE;
    Ok(Event::Decision(PromoteDecision {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        src_nid: u32::try_from(e.src_nid).ok(),
        dst_cpu: should.then(|| u32::try_from(e.target).ok()).flatten(),
        dst_nid: (!should).then(|| u32::try_from(e.target).ok()).flatten(),
        candidate_pages: e.candidate_pages,
        verdict: verdict(&e),
    }))
}

fn demote_batch(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: DemoteBatchEvent = read(bytes, hdr.kind)?;
    Ok(Event::Demote(DemoteBatch {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        src_nid: u32::try_from(e.src_nid).ok(),
        pages: e.nr_succeeded,
    }))
}

/// Byte images of wire structs, for tests and fixtures.
pub fn as_bytes<T: bytemuck::NoUninit>(value: &T) -> &[u8] {
    bytemuck::bytes_of(value)
}
