set(BENCH_LIBS_simulate cubeflow_sim)
