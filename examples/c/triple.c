/* triple.wasm: the stream function of the sensor demo, a WASI reactor (no `_start`): each
 * message of the queue `noise` calls `triple(reading)` and its result goes to `noise-tripled`
 * (examples/app/wedge.toml, docs/triggers.md). `scale(x, k)` is a second export for tests. */
__attribute__((export_name("triple"))) double triple(double x) { return 3.0 * x; }

__attribute__((export_name("scale"))) double scale(double x, int k) { return x * k; }

/* Traps on a negative reading: a message a stream function cannot take. */
__attribute__((export_name("checked_triple"))) double checked_triple(double x) {
    if (x < 0)
        __builtin_trap();
    return 3.0 * x;
}
