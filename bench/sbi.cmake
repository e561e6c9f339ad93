# sbi_bench: links the libtorch SBI model (libs/nn).
set(BENCH_LIBS_sbi cubeflow_nn)
set(BENCH_NEEDS_TORCH_sbi ON)
