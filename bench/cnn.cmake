# cnn_bench: links the libtorch CNN library (plugins/inference).
set(BENCH_LIBS_cnn cubeflow_torch)
set(BENCH_NEEDS_TORCH_cnn ON)
