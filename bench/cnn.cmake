# cnn_bench: links the libtorch CNN library (libs/nn).
set(BENCH_LIBS_cnn cubeflow_nn)
set(BENCH_NEEDS_TORCH_cnn ON)
