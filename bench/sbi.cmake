# sbi_bench: links the libtorch SBI model (plugins/inference).
set(BENCH_LIBS_sbi cubeflow_torch)
set(BENCH_NEEDS_TORCH_sbi ON)
