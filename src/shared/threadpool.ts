/**
 * Imported first by the CLI: file I/O runs on libuv's threadpool (4 threads by default), where fsyncs
 * of uploads would otherwise queue the WAL reads that time commits. Must run before any async I/O.
 */
process.env.UV_THREADPOOL_SIZE ??= "16";
