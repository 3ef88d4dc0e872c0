//! The C ABI TensorFlow loads: `TF_InitPlugin`, the ops tables of
//! `tensorflow/c/experimental/filesystem/filesystem_interface.h` (TensorFlow 2.21,
//! ABI/API 0) as `#[repr(C)]` structs, and `TF_SetStatus` resolved at run time.
//!
//! This is the only module with `unsafe`. Each callback converts its arguments,
//! calls [`AzFilesystem`] (safe Rust), and reports the result as a `TF_Status`; a
//! panic is caught and reported as `INTERNAL` instead of unwinding into C++.
//! Memory TensorFlow frees (the scheme, the tables, `translate_name`'s result, the
//! arrays of `get_children`/`get_matching_paths`) comes from `malloc`, which is
//! what `plugin_memory_allocate`/`plugin_memory_free` are.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use bytes::Bytes;

use crate::config;
use crate::fs::{AzFilesystem, Reader, Writer};
use crate::status::{FsError, TfCode};

/// `TF_Status`, opaque.
#[repr(C)]
pub(crate) struct TfStatus {
    _private: [u8; 0],
}

#[repr(C)]
pub(crate) struct TfRandomAccessFile {
    plugin_file: *mut c_void,
}

#[repr(C)]
pub(crate) struct TfWritableFile {
    plugin_file: *mut c_void,
}

#[repr(C)]
pub(crate) struct TfReadOnlyMemoryRegion {
    plugin_memory_region: *mut c_void,
}

#[repr(C)]
pub(crate) struct TfFilesystem {
    plugin_filesystem: *mut c_void,
}

#[repr(C)]
pub(crate) struct TfFileStatistics {
    length: i64,
    mtime_nsec: i64,
    is_directory: bool,
}

type Status = *mut TfStatus;
type Path = *const c_char;
/// Slots this plugin leaves empty (transactions, configuration): only their size matters.
type Unused = Option<unsafe extern "C" fn()>;

#[repr(C)]
pub(crate) struct RandomAccessFileOps {
    cleanup: Option<unsafe extern "C" fn(*mut TfRandomAccessFile)>,
    read: Option<
        unsafe extern "C" fn(*const TfRandomAccessFile, u64, usize, *mut c_char, Status) -> i64,
    >,
}

#[repr(C)]
pub(crate) struct WritableFileOps {
    cleanup: Option<unsafe extern "C" fn(*mut TfWritableFile)>,
    append: Option<unsafe extern "C" fn(*const TfWritableFile, *const c_char, usize, Status)>,
    tell: Option<unsafe extern "C" fn(*const TfWritableFile, Status) -> i64>,
    flush: Option<unsafe extern "C" fn(*const TfWritableFile, Status)>,
    sync: Option<unsafe extern "C" fn(*const TfWritableFile, Status)>,
    close: Option<unsafe extern "C" fn(*const TfWritableFile, Status)>,
}

#[repr(C)]
pub(crate) struct ReadOnlyMemoryRegionOps {
    cleanup: Option<unsafe extern "C" fn(*mut TfReadOnlyMemoryRegion)>,
    data: Option<unsafe extern "C" fn(*const TfReadOnlyMemoryRegion) -> *const c_void>,
    length: Option<unsafe extern "C" fn(*const TfReadOnlyMemoryRegion) -> u64>,
}

type Fs = *const TfFilesystem;

#[repr(C)]
pub(crate) struct FilesystemOps {
    init: Option<unsafe extern "C" fn(*mut TfFilesystem, Status)>,
    cleanup: Option<unsafe extern "C" fn(*mut TfFilesystem)>,
    new_random_access_file: Option<unsafe extern "C" fn(Fs, Path, *mut TfRandomAccessFile, Status)>,
    new_writable_file: Option<unsafe extern "C" fn(Fs, Path, *mut TfWritableFile, Status)>,
    new_appendable_file: Option<unsafe extern "C" fn(Fs, Path, *mut TfWritableFile, Status)>,
    new_read_only_memory_region_from_file:
        Option<unsafe extern "C" fn(Fs, Path, *mut TfReadOnlyMemoryRegion, Status)>,
    create_dir: Option<unsafe extern "C" fn(Fs, Path, Status)>,
    recursively_create_dir: Option<unsafe extern "C" fn(Fs, Path, Status)>,
    delete_file: Option<unsafe extern "C" fn(Fs, Path, Status)>,
    delete_dir: Option<unsafe extern "C" fn(Fs, Path, Status)>,
    delete_recursively: Option<unsafe extern "C" fn(Fs, Path, *mut u64, *mut u64, Status)>,
    rename_file: Option<unsafe extern "C" fn(Fs, Path, Path, Status)>,
    copy_file: Option<unsafe extern "C" fn(Fs, Path, Path, Status)>,
    path_exists: Option<unsafe extern "C" fn(Fs, Path, Status)>,
    paths_exist: Unused,
    stat: Option<unsafe extern "C" fn(Fs, Path, *mut TfFileStatistics, Status)>,
    is_directory: Option<unsafe extern "C" fn(Fs, Path, Status) -> bool>,
    get_file_size: Option<unsafe extern "C" fn(Fs, Path, Status) -> i64>,
    translate_name: Option<unsafe extern "C" fn(Fs, *const c_char) -> *mut c_char>,
    get_children: Option<unsafe extern "C" fn(Fs, Path, *mut *mut *mut c_char, Status) -> c_int>,
    get_matching_paths:
        Option<unsafe extern "C" fn(Fs, *const c_char, *mut *mut *mut c_char, Status) -> c_int>,
    flush_caches: Unused,
    start_transaction: Unused,
    end_transaction: Unused,
    add_to_transaction: Unused,
    get_transaction_for_path: Unused,
    get_or_start_transaction_for_path: Unused,
    decode_transaction_token: Unused,
    get_filesystem_configuration: Unused,
    set_filesystem_configuration: Unused,
    get_filesystem_configuration_option: Unused,
    set_filesystem_configuration_option: Unused,
    get_filesystem_configuration_keys: Unused,
}

#[repr(C)]
pub(crate) struct PluginOps {
    scheme: *mut c_char,
    filesystem_ops_abi: c_int,
    filesystem_ops_api: c_int,
    filesystem_ops_size: usize,
    filesystem_ops: *mut FilesystemOps,
    random_access_file_ops_abi: c_int,
    random_access_file_ops_api: c_int,
    random_access_file_ops_size: usize,
    random_access_file_ops: *mut RandomAccessFileOps,
    writable_file_ops_abi: c_int,
    writable_file_ops_api: c_int,
    writable_file_ops_size: usize,
    writable_file_ops: *mut WritableFileOps,
    read_only_memory_region_ops_abi: c_int,
    read_only_memory_region_ops_api: c_int,
    read_only_memory_region_ops_size: usize,
    read_only_memory_region_ops: *mut ReadOnlyMemoryRegionOps,
}

/// `TF_FilesystemPluginInfo`: `num_schemes` comes first (getting this order wrong
/// crashes inside TensorFlow's registration).
#[repr(C)]
pub(crate) struct PluginInfo {
    num_schemes: usize,
    ops: *mut PluginOps,
    plugin_memory_allocate: Option<unsafe extern "C" fn(usize) -> *mut c_void>,
    plugin_memory_free: Option<unsafe extern "C" fn(*mut c_void)>,
}

// ---- TF_SetStatus, found at run time ------------------------------------------------

type SetStatusFn = unsafe extern "C" fn(Status, c_int, *const c_char);

/// `TF_SetStatus` from the process (TensorFlow's Python extension loads
/// `libtensorflow_framework.so.2` with `RTLD_GLOBAL` on most builds), else from that
/// library if it is loaded at all. `None` outside TensorFlow.
fn set_status_fn() -> Option<SetStatusFn> {
    static FOUND: OnceLock<Option<SetStatusFn>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let name = c"TF_SetStatus";
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads.
        let mut sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if sym.is_null() {
            // SAFETY: RTLD_NOLOAD never loads anything; it returns a handle only if the
            // library is already in the process, and we never dlclose it (TF keeps it).
            let handle = unsafe {
                libc::dlopen(
                    c"libtensorflow_framework.so.2".as_ptr(),
                    libc::RTLD_NOW | libc::RTLD_NOLOAD,
                )
            };
            if !handle.is_null() {
                // SAFETY: a valid handle and a NUL-terminated name.
                sym = unsafe { libc::dlsym(handle, name.as_ptr()) };
            }
        }
        if sym.is_null() {
            None
        } else {
            // SAFETY: the symbol is TensorFlow's `void TF_SetStatus(TF_Status*, TF_Code, const char*)`;
            // TF_Code is a C enum, passed as int.
            Some(unsafe { std::mem::transmute::<*mut c_void, SetStatusFn>(sym) })
        }
    })
}

fn set_status(status: Status, code: TfCode, message: &str) {
    if status.is_null() {
        return;
    }
    match set_status_fn() {
        Some(f) => {
            let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
            // SAFETY: `status` is the live TF_Status TensorFlow passed in; TF_SetStatus copies the text.
            unsafe { f(status, code as c_int, text.as_ptr()) }
        }
        None => tracing::error!(
            code = code as i32,
            message,
            "TF_SetStatus not found: is this running inside TensorFlow?"
        ),
    }
}

/// Runs `f`, reports its outcome on `status`, and never lets a panic cross into C++.
fn report<T>(status: Status, f: impl FnOnce() -> Result<T, FsError>) -> Option<T> {
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(FsError::Service {
            path: String::new(),
            status: 500,
            code: "PluginPanic".into(),
            message: format!("the entraflow filesystem plugin panicked: {what}"),
        })
    });
    match outcome {
        Ok(value) => {
            set_status(status, TfCode::Ok, "");
            Some(value)
        }
        Err(e) => {
            let code = if matches!(&e, FsError::Service { code, .. } if code == "PluginPanic") {
                TfCode::Internal
            } else {
                e.code()
            };
            set_status(status, code, &e.to_string());
            None
        }
    }
}

/// A borrowed C string argument.
fn arg<'a>(s: *const c_char) -> Result<&'a str, FsError> {
    if s.is_null() {
        return Err(FsError::InvalidPath("TensorFlow passed no path".into()));
    }
    // SAFETY: TensorFlow passes NUL-terminated strings that outlive the call.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| FsError::InvalidPath("the path is not valid UTF-8".into()))
}

fn filesystem<'a>(fs: Fs) -> &'a AzFilesystem {
    // SAFETY: `plugin_filesystem` was set by `fs_init` to a leaked Box<AzFilesystem>
    // that lives until `fs_cleanup`, after every other call on this filesystem.
    unsafe { &*((*fs).plugin_filesystem as *const AzFilesystem) }
}

/// A `malloc`ed, NUL-terminated copy (TensorFlow frees it with `plugin_memory_free`).
fn malloc_string(s: &str) -> *mut c_char {
    // SAFETY: malloc of len+1 bytes, fully written before being returned.
    unsafe {
        let p = libc::malloc(s.len() + 1) as *mut u8;
        if p.is_null() {
            return std::ptr::null_mut();
        }
        std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
        p as *mut c_char
    }
}

/// A `malloc`ed array of `malloc`ed strings, as `get_children` returns it.
fn malloc_string_array(items: &[String], out: *mut *mut *mut c_char) -> c_int {
    // SAFETY: `out` is TensorFlow's out-pointer; the array has room for every item.
    unsafe {
        let array = libc::malloc(items.len().max(1) * std::mem::size_of::<*mut c_char>())
            as *mut *mut c_char;
        if array.is_null() {
            return -1;
        }
        for (i, item) in items.iter().enumerate() {
            *array.add(i) = malloc_string(item);
        }
        *out = array;
    }
    items.len() as c_int
}

// ---- filesystem ops ------------------------------------------------------------------

unsafe extern "C" fn fs_init(fs: *mut TfFilesystem, status: Status) {
    if let Some(az) = report(status, || Ok(AzFilesystem::from_env())) {
        // SAFETY: `fs` is TensorFlow's TF_Filesystem for this registration.
        unsafe { (*fs).plugin_filesystem = Box::into_raw(Box::new(az)) as *mut c_void };
    }
}

unsafe extern "C" fn fs_cleanup(fs: *mut TfFilesystem) {
    // SAFETY: set by `fs_init`; TensorFlow calls cleanup once, last.
    unsafe {
        let p = (*fs).plugin_filesystem as *mut AzFilesystem;
        if !p.is_null() {
            drop(Box::from_raw(p));
            (*fs).plugin_filesystem = std::ptr::null_mut();
        }
    }
}

unsafe extern "C" fn fs_new_random_access_file(
    fs: Fs,
    path: Path,
    file: *mut TfRandomAccessFile,
    status: Status,
) {
    if let Some(reader) = report(status, || filesystem(fs).open_read(arg(path)?)) {
        // SAFETY: `file` is TensorFlow's out-struct; freed by `raf_cleanup`.
        unsafe { (*file).plugin_file = Box::into_raw(Box::new(reader)) as *mut c_void };
    }
}

unsafe fn open_writer(fs: Fs, path: Path, file: *mut TfWritableFile, status: Status, append: bool) {
    if let Some(writer) = report(status, || filesystem(fs).open_write(arg(path)?, append)) {
        // SAFETY: `file` is TensorFlow's out-struct; freed by `wf_cleanup`.
        unsafe { (*file).plugin_file = Box::into_raw(Box::new(writer)) as *mut c_void };
    }
}

unsafe extern "C" fn fs_new_writable_file(
    fs: Fs,
    path: Path,
    file: *mut TfWritableFile,
    status: Status,
) {
    // SAFETY: arguments forwarded as received.
    unsafe { open_writer(fs, path, file, status, false) }
}

unsafe extern "C" fn fs_new_appendable_file(
    fs: Fs,
    path: Path,
    file: *mut TfWritableFile,
    status: Status,
) {
    // SAFETY: arguments forwarded as received.
    unsafe { open_writer(fs, path, file, status, true) }
}

unsafe extern "C" fn fs_new_read_only_memory_region(
    fs: Fs,
    path: Path,
    region: *mut TfReadOnlyMemoryRegion,
    status: Status,
) {
    if let Some(bytes) = report(status, || filesystem(fs).read_all(arg(path)?)) {
        // SAFETY: `region` is TensorFlow's out-struct; freed by `rom_cleanup`.
        unsafe { (*region).plugin_memory_region = Box::into_raw(Box::new(bytes)) as *mut c_void };
    }
}

unsafe extern "C" fn fs_create_dir(fs: Fs, path: Path, status: Status) {
    report(status, || filesystem(fs).create_dir(arg(path)?, false));
}

unsafe extern "C" fn fs_recursively_create_dir(fs: Fs, path: Path, status: Status) {
    report(status, || filesystem(fs).create_dir(arg(path)?, true));
}

unsafe extern "C" fn fs_delete_file(fs: Fs, path: Path, status: Status) {
    report(status, || filesystem(fs).delete_file(arg(path)?));
}

unsafe extern "C" fn fs_delete_dir(fs: Fs, path: Path, status: Status) {
    report(status, || filesystem(fs).delete_dir(arg(path)?));
}

unsafe extern "C" fn fs_delete_recursively(
    fs: Fs,
    path: Path,
    undeleted_files: *mut u64,
    undeleted_dirs: *mut u64,
    status: Status,
) {
    let failed = report(status, || filesystem(fs).delete_recursively(arg(path)?));
    // SAFETY: TensorFlow's out-counters (checked for null all the same).
    unsafe {
        if !undeleted_files.is_null() {
            *undeleted_files = failed.unwrap_or(0);
        }
        if !undeleted_dirs.is_null() {
            *undeleted_dirs = 0;
        }
    }
}

unsafe extern "C" fn fs_rename_file(fs: Fs, src: Path, dst: Path, status: Status) {
    report(status, || filesystem(fs).rename_file(arg(src)?, arg(dst)?));
}

unsafe extern "C" fn fs_copy_file(fs: Fs, src: Path, dst: Path, status: Status) {
    report(status, || filesystem(fs).copy_file(arg(src)?, arg(dst)?));
}

unsafe extern "C" fn fs_path_exists(fs: Fs, path: Path, status: Status) {
    report(status, || filesystem(fs).stat(arg(path)?).map(|_| ()));
}

unsafe extern "C" fn fs_stat(fs: Fs, path: Path, stats: *mut TfFileStatistics, status: Status) {
    if let Some(s) = report(status, || filesystem(fs).stat(arg(path)?)) {
        // SAFETY: `stats` is TensorFlow's out-struct.
        unsafe {
            *stats = TfFileStatistics {
                length: s.length as i64,
                mtime_nsec: s.mtime_nsec,
                is_directory: s.is_directory,
            }
        };
    }
}

unsafe extern "C" fn fs_is_directory(fs: Fs, path: Path, status: Status) -> bool {
    report(status, || filesystem(fs).is_directory(arg(path)?)).is_some()
}

unsafe extern "C" fn fs_get_file_size(fs: Fs, path: Path, status: Status) -> i64 {
    report(status, || {
        let uri = arg(path)?;
        let s = filesystem(fs).stat(uri)?;
        if s.is_directory {
            return Err(FsError::FailedPrecondition(format!(
                "{uri} is a directory, it has no size"
            )));
        }
        Ok(s.length as i64)
    })
    .unwrap_or(-1)
}

/// Without this TensorFlow would hand the ops only the path part of the URI, losing
/// the account.
unsafe extern "C" fn fs_translate_name(_fs: Fs, uri: *const c_char) -> *mut c_char {
    match arg(uri) {
        Ok(s) => malloc_string(s),
        Err(_) => malloc_string(""),
    }
}

unsafe extern "C" fn fs_get_children(
    fs: Fs,
    path: Path,
    entries: *mut *mut *mut c_char,
    status: Status,
) -> c_int {
    match report(status, || filesystem(fs).children(arg(path)?)) {
        Some(names) => malloc_string_array(&names, entries),
        None => -1,
    }
}

unsafe extern "C" fn fs_get_matching_paths(
    fs: Fs,
    glob: *const c_char,
    entries: *mut *mut *mut c_char,
    status: Status,
) -> c_int {
    match report(status, || filesystem(fs).matching_paths(arg(glob)?)) {
        Some(paths) => malloc_string_array(&paths, entries),
        None => -1,
    }
}

// ---- random access files -------------------------------------------------------------

unsafe extern "C" fn raf_cleanup(file: *mut TfRandomAccessFile) {
    // SAFETY: set by `fs_new_random_access_file`; cleanup is the last call.
    unsafe { drop(Box::from_raw((*file).plugin_file as *mut Reader)) }
}

unsafe extern "C" fn raf_read(
    file: *const TfRandomAccessFile,
    offset: u64,
    n: usize,
    buffer: *mut c_char,
    status: Status,
) -> i64 {
    // SAFETY: a live Reader (see `raf_cleanup`); `buffer` has room for `n` bytes.
    let (reader, buf) = unsafe {
        (
            &*((*file).plugin_file as *const Reader),
            std::slice::from_raw_parts_mut(buffer as *mut u8, n),
        )
    };
    let read = report(status, || {
        let got = reader.read(offset, buf)?;
        Ok(got)
    });
    match read {
        Some(got) if got < n => {
            set_status(
                status,
                TfCode::OutOfRange,
                &format!("read {got} of {n} bytes at offset {offset}: end of file"),
            );
            got as i64
        }
        Some(got) => got as i64,
        None => -1,
    }
}

// ---- writable files ------------------------------------------------------------------

fn writer<'a>(file: *const TfWritableFile) -> &'a Writer {
    // SAFETY: set by `open_writer`, freed only by `wf_cleanup`, which is the last call.
    unsafe { &*((*file).plugin_file as *const Writer) }
}

unsafe extern "C" fn wf_cleanup(file: *mut TfWritableFile) {
    // SAFETY: see `writer`.
    unsafe { drop(Box::from_raw((*file).plugin_file as *mut Writer)) }
}

unsafe extern "C" fn wf_append(
    file: *const TfWritableFile,
    buffer: *const c_char,
    n: usize,
    status: Status,
) {
    // SAFETY: TensorFlow's buffer of `n` bytes, valid for the call.
    let data = if n == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(buffer as *const u8, n) }
    };
    report(status, || writer(file).append(data));
}

unsafe extern "C" fn wf_tell(file: *const TfWritableFile, status: Status) -> i64 {
    report(status, || writer(file).tell()).map_or(-1, |p| p as i64)
}

unsafe extern "C" fn wf_sync(file: *const TfWritableFile, status: Status) {
    report(status, || writer(file).sync());
}

unsafe extern "C" fn wf_close(file: *const TfWritableFile, status: Status) {
    report(status, || writer(file).close());
}

// ---- read-only memory regions --------------------------------------------------------

fn region<'a>(r: *const TfReadOnlyMemoryRegion) -> &'a Bytes {
    // SAFETY: set by `fs_new_read_only_memory_region`, freed by `rom_cleanup`, last.
    unsafe { &*((*r).plugin_memory_region as *const Bytes) }
}

unsafe extern "C" fn rom_cleanup(r: *mut TfReadOnlyMemoryRegion) {
    // SAFETY: see `region`.
    unsafe { drop(Box::from_raw((*r).plugin_memory_region as *mut Bytes)) }
}

unsafe extern "C" fn rom_data(r: *const TfReadOnlyMemoryRegion) -> *const c_void {
    region(r).as_ptr() as *const c_void
}

unsafe extern "C" fn rom_length(r: *const TfReadOnlyMemoryRegion) -> u64 {
    region(r).len() as u64
}

// ---- registration --------------------------------------------------------------------

unsafe extern "C" fn plugin_allocate(size: usize) -> *mut c_void {
    // SAFETY: plain malloc.
    unsafe { libc::malloc(size) }
}

unsafe extern "C" fn plugin_free(ptr: *mut c_void) {
    // SAFETY: every pointer TensorFlow frees this way came from malloc here.
    unsafe { libc::free(ptr) }
}

/// A `malloc`ed `T` (TensorFlow frees the tables with `plugin_memory_free`).
fn malloc_value<T>(value: T) -> *mut T {
    // SAFETY: calloc returns memory aligned for any fundamental type; fully written.
    unsafe {
        let p = libc::calloc(1, std::mem::size_of::<T>()) as *mut T;
        if !p.is_null() {
            p.write(value);
        }
        p
    }
}

/// The tables for one scheme.
fn plugin_ops(scheme: &str) -> PluginOps {
    PluginOps {
        scheme: malloc_string(scheme),
        filesystem_ops_abi: 0,
        filesystem_ops_api: 0,
        filesystem_ops_size: std::mem::size_of::<FilesystemOps>(),
        filesystem_ops: malloc_value(FilesystemOps {
            init: Some(fs_init),
            cleanup: Some(fs_cleanup),
            new_random_access_file: Some(fs_new_random_access_file),
            new_writable_file: Some(fs_new_writable_file),
            new_appendable_file: Some(fs_new_appendable_file),
            new_read_only_memory_region_from_file: Some(fs_new_read_only_memory_region),
            create_dir: Some(fs_create_dir),
            recursively_create_dir: Some(fs_recursively_create_dir),
            delete_file: Some(fs_delete_file),
            delete_dir: Some(fs_delete_dir),
            delete_recursively: Some(fs_delete_recursively),
            rename_file: Some(fs_rename_file),
            copy_file: Some(fs_copy_file),
            path_exists: Some(fs_path_exists),
            paths_exist: None,
            stat: Some(fs_stat),
            is_directory: Some(fs_is_directory),
            get_file_size: Some(fs_get_file_size),
            translate_name: Some(fs_translate_name),
            get_children: Some(fs_get_children),
            get_matching_paths: Some(fs_get_matching_paths),
            flush_caches: None,
            start_transaction: None,
            end_transaction: None,
            add_to_transaction: None,
            get_transaction_for_path: None,
            get_or_start_transaction_for_path: None,
            decode_transaction_token: None,
            get_filesystem_configuration: None,
            set_filesystem_configuration: None,
            get_filesystem_configuration_option: None,
            set_filesystem_configuration_option: None,
            get_filesystem_configuration_keys: None,
        }),
        random_access_file_ops_abi: 0,
        random_access_file_ops_api: 0,
        random_access_file_ops_size: std::mem::size_of::<RandomAccessFileOps>(),
        random_access_file_ops: malloc_value(RandomAccessFileOps {
            cleanup: Some(raf_cleanup),
            read: Some(raf_read),
        }),
        writable_file_ops_abi: 0,
        writable_file_ops_api: 0,
        writable_file_ops_size: std::mem::size_of::<WritableFileOps>(),
        writable_file_ops: malloc_value(WritableFileOps {
            cleanup: Some(wf_cleanup),
            append: Some(wf_append),
            tell: Some(wf_tell),
            // Flush and sync both stage buffered bytes; only close makes them visible.
            flush: Some(wf_sync),
            sync: Some(wf_sync),
            close: Some(wf_close),
        }),
        read_only_memory_region_ops_abi: 0,
        read_only_memory_region_ops_api: 0,
        read_only_memory_region_ops_size: std::mem::size_of::<ReadOnlyMemoryRegionOps>(),
        read_only_memory_region_ops: malloc_value(ReadOnlyMemoryRegionOps {
            cleanup: Some(rom_cleanup),
            data: Some(rom_data),
            length: Some(rom_length),
        }),
    }
}

/// TensorFlow's entry point. Registers one scheme: `ENTRAFLOW_TF_SCHEME`, default
/// `az`. If tensorflow-io has registered `az` already, TensorFlow refuses the
/// registration; set `ENTRAFLOW_TF_SCHEME=azent` and register again.
///
/// # Safety
/// `info` must point to TensorFlow's `TF_FilesystemPluginInfo`.
#[unsafe(no_mangle)]
#[allow(unreachable_pub)] // exported from the cdylib by name; not Rust API
pub unsafe extern "C" fn TF_InitPlugin(info: *mut PluginInfo) {
    config::init_logging();
    let scheme = config::scheme();
    tracing::info!(
        scheme,
        "registering the entraflow filesystem; if '{scheme}' is already taken (tensorflow-io registers 'az'), set {}={} and register again",
        config::ENTRAFLOW_TF_SCHEME,
        config::ALTERNATIVE_SCHEME
    );
    // SAFETY: `info` is TensorFlow's struct; everything stored is malloc'ed.
    unsafe {
        (*info).plugin_memory_allocate = Some(plugin_allocate);
        (*info).plugin_memory_free = Some(plugin_free);
        (*info).num_schemes = 1;
        (*info).ops = malloc_value(plugin_ops(&scheme));
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Sizes and offsets TensorFlow 2.21's headers give on x86_64/aarch64 Linux
    /// (measured by compiling `filesystem_interface.h` with g++ and printing
    /// `sizeof`/`offsetof`). A mismatch means the tables no longer line up.
    #[test]
    fn layouts_match_tensorflow_2_21_headers() {
        assert_eq!(size_of::<TfFileStatistics>(), 24);
        assert_eq!(offset_of!(TfFileStatistics, mtime_nsec), 8);
        assert_eq!(offset_of!(TfFileStatistics, is_directory), 16);
        assert_eq!(size_of::<RandomAccessFileOps>(), 16);
        assert_eq!(size_of::<WritableFileOps>(), 48);
        assert_eq!(size_of::<ReadOnlyMemoryRegionOps>(), 24);
        assert_eq!(size_of::<FilesystemOps>(), 264);
        assert_eq!(offset_of!(FilesystemOps, translate_name), 144);
        assert_eq!(offset_of!(FilesystemOps, get_children), 152);
        assert_eq!(offset_of!(FilesystemOps, get_matching_paths), 160);
        assert_eq!(offset_of!(FilesystemOps, flush_caches), 168);
        assert_eq!(
            offset_of!(FilesystemOps, get_filesystem_configuration_keys),
            256
        );
        assert_eq!(size_of::<PluginOps>(), 104);
        assert_eq!(offset_of!(PluginOps, filesystem_ops), 24);
        assert_eq!(offset_of!(PluginOps, random_access_file_ops), 48);
        assert_eq!(offset_of!(PluginOps, writable_file_ops), 72);
        assert_eq!(offset_of!(PluginOps, read_only_memory_region_ops_size), 88);
        assert_eq!(offset_of!(PluginOps, read_only_memory_region_ops), 96);
        assert_eq!(size_of::<PluginInfo>(), 32);
        assert_eq!(offset_of!(PluginInfo, ops), 8);
        assert_eq!(offset_of!(PluginInfo, plugin_memory_allocate), 16);
        assert_eq!(offset_of!(PluginInfo, plugin_memory_free), 24);
    }

    #[test]
    fn init_plugin_fills_every_table_without_tensorflow() {
        let mut info = PluginInfo {
            num_schemes: 0,
            ops: std::ptr::null_mut(),
            plugin_memory_allocate: None,
            plugin_memory_free: None,
        };
        // SAFETY: a valid PluginInfo; everything it receives is freed below as TF would.
        unsafe {
            TF_InitPlugin(&mut info);
            assert_eq!(info.num_schemes, 1);
            let ops = &*info.ops;
            let scheme = CStr::from_ptr(ops.scheme).to_str().unwrap().to_owned();
            assert_eq!(scheme, config::scheme());
            assert_eq!(ops.filesystem_ops_size, 264);
            assert!((*ops.filesystem_ops).translate_name.is_some());
            let name = fs_translate_name(std::ptr::null(), c"az://a/c/b".as_ptr());
            assert_eq!(CStr::from_ptr(name).to_str().unwrap(), "az://a/c/b");
            let free = info.plugin_memory_free.unwrap();
            free(name as *mut c_void);
            free(ops.scheme as *mut c_void);
            free(ops.filesystem_ops as *mut c_void);
            free(ops.random_access_file_ops as *mut c_void);
            free(ops.writable_file_ops as *mut c_void);
            free(ops.read_only_memory_region_ops as *mut c_void);
            free(info.ops as *mut c_void);
        }
        // Outside TensorFlow there is no TF_SetStatus, and reporting must not crash.
        assert!(set_status_fn().is_none());
        set_status(std::ptr::null_mut(), TfCode::NotFound, "x");
    }
}
