set(BENCH_LIBS_digs_is cubeflow_sim)
