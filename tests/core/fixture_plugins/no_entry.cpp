// A shared library without the cubeflow entry point.
extern "C" __attribute__((visibility("default"))) int some_other_symbol() { return 42; }
