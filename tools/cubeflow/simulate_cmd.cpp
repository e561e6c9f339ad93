// `cubeflow simulate library|galaxy ...`
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "cubeflow/sim/galaxy.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/observables.hpp"

namespace cubeflow::tools {

int SimulateCommand(int argc, char** argv) {
  using namespace cubeflow;
  using namespace cubeflow::sim;
  CLI::App app{"Simulate training libraries and mock galaxies (Galceran et al. 2026 forward model)", "cubeflow simulate"};
  app.require_subcommand(1);

  auto* lib = app.add_subcommand("library", "Write a FITS library of simulated spectra, photometry and SFH labels");
  int64_t n = 1000;
  uint64_t seed = 1;
  std::string out, config_path;
  int threads = 0;
  int64_t chunk = 4096;
  bool quiet = false;
  lib->add_option("--n", n, "number of objects")->required()->check(CLI::NonNegativeNumber);
  lib->add_option("--seed", seed, "random seed (results are identical for any --threads)");
  lib->add_option("--out", out, "output FITS file")->required();
  lib->add_option("--config", config_path, "YAML config (see docs/forward_model.md); default: the paper's recipe");
  lib->add_option("--threads", threads, "threads (0 = all cores)");
  lib->add_option("--chunk", chunk, "rows simulated and written at a time")->check(CLI::PositiveNumber);
  lib->add_flag("--quiet", quiet, "no progress output");

  auto* gal = app.add_subcommand("galaxy", "Write a mock MUSE cube, HST images, kinematic and truth maps");
  GalaxyConfig g;
  std::string gdir;
  int gthreads = 0;
  bool no_noise = false;
  gal->add_option("--out", gdir, "output directory")->required();
  gal->add_option("--nx", g.nx, "spaxels along x")->check(CLI::Range(4, 100000));
  gal->add_option("--ny", g.ny, "spaxels along y")->check(CLI::Range(4, 100000));
  gal->add_option("--nwave", g.nwave, "wavelength channels")->check(CLI::Range(16, 100000));
  gal->add_option("--wave-start", g.wave_start, "first channel, Angstrom (air)");
  gal->add_option("--wave-step", g.wave_step, "channel width, Angstrom");
  gal->add_option("--seed", g.seed, "random seed");
  gal->add_option("--redshift", g.redshift, "systemic redshift");
  gal->add_option("--ssp", g.ssp, "SSP library: builtin or a directory");
  gal->add_option("--threads", gthreads, "threads (0 = all cores)");
  gal->add_flag("--no-noise", no_noise, "write a noise-free DATA cube");
  gal->add_option("--histories", g.histories,
                  "spaxel histories: prior (one non-parametric history per spaxel, the training prior's "
                  "family) or components (old + disc + young-arm mixture, outside the prior)")
      ->check(CLI::IsMember({"prior", "components"}));
  std::string truth_lib, truth_lib_config;
  gal->add_option("--truth-library", truth_lib,
                  "also write every valid spaxel's history rendered as a training library would render it "
                  "(rest frame, model grid, normalised; noise only if the --library-config asks) to this FITS "
                  "file: `cubeflow evaluate MODEL FILE` then measures a model on the galaxy's histories");
  gal->add_option("--library-config", truth_lib_config,
                  "simulator YAML config of the truth library (default: the paper's recipe without noise)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*lib) {
    SimConfig cfg;
    if (!config_path.empty()) {
      auto r = LoadSimConfig(config_path);
      if (!r.ok()) { std::cerr << "cubeflow simulate library: " << r.status().message() << "\n"; return 2; }
      cfg = *r;
    }
    std::shared_ptr<const SspGrid> ssp;
    if (cfg.ssp == "builtin") {
      ssp = BuiltinSsp();
    } else {
      SspLoadOptions lo;
      lo.name_contains = cfg.ssp_name_contains;
      auto r = LoadSspDirectory(cfg.ssp, lo);
      if (!r.ok()) { std::cerr << "cubeflow simulate library: " << r.status().message() << "\n"; return 2; }
      ssp = *r;
    }
    auto t0 = std::chrono::steady_clock::now();
    auto fm = ForwardModel::Build(ssp, cfg);
    if (!fm.ok()) { std::cerr << "cubeflow simulate library: " << fm.status().message() << "\n"; return 2; }
    LibraryWriteOptions opt;
    opt.threads = threads;
    opt.chunk_rows = chunk;
    opt.extra_meta["command"] = "cubeflow simulate library --n " + std::to_string(n) + " --seed " + std::to_string(seed);
    if (!quiet)
      opt.progress = [&](int64_t done, int64_t total) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "\r%lld / %lld objects (%.0f /s)", static_cast<long long>(done),
                     static_cast<long long>(total), done / std::max(s, 1e-9));
        if (done == total) std::fprintf(stderr, "\n");
      };
    const Status st = GenerateLibrary(**fm, n, seed, out, opt);
    if (!st.ok()) { std::cerr << "cubeflow simulate library: " << st.message() << "\n"; return 1; }
    if (!quiet) std::fprintf(stderr, "wrote %s\n", out.c_str());
    return 0;
  }
  if (*gal) {
    g.noise = !no_noise;
    auto m = MockGalaxy::Build(g);
    if (!m.ok()) { std::cerr << "cubeflow simulate galaxy: " << m.status().message() << "\n"; return 2; }
    const Status st = (*m)->Write(gdir, gthreads);
    if (!st.ok()) { std::cerr << "cubeflow simulate galaxy: " << st.message() << "\n"; return 1; }
    if (!truth_lib.empty()) {
      SimConfig lc;
      lc.noise.enabled = false;
      if (!truth_lib_config.empty()) {
        auto r = LoadSimConfig(truth_lib_config);
        if (!r.ok()) { std::cerr << "cubeflow simulate galaxy: " << r.status().message() << "\n"; return 2; }
        lc = *r;
      }
      if (lc.ssp != g.ssp) {
        std::cerr << "cubeflow simulate galaxy: --library-config uses SSP '" << lc.ssp << "' but the galaxy uses '"
                  << g.ssp << "'; give both the same library\n";
        return 2;
      }
      std::shared_ptr<const SspGrid> ssp;
      if (lc.ssp == "builtin") {
        ssp = BuiltinSsp();
      } else {
        auto r = LoadSspDirectory(lc.ssp);
        if (!r.ok()) { std::cerr << "cubeflow simulate galaxy: " << r.status().message() << "\n"; return 2; }
        ssp = *r;
      }
      auto fm = ForwardModel::Build(ssp, lc);
      if (!fm.ok()) { std::cerr << "cubeflow simulate galaxy: " << fm.status().message() << "\n"; return 2; }
      const Status ts = (*m)->WriteTruthLibrary(truth_lib, **fm, g.seed, gthreads);
      if (!ts.ok()) { std::cerr << "cubeflow simulate galaxy: " << ts.message() << "\n"; return 1; }
      std::fprintf(stderr, "wrote %s (truth library)\n", truth_lib.c_str());
    }
    std::fprintf(stderr, "wrote %s/{cube.fits, hst_*.fits, kinematics.fits, truth.fits}\n", gdir.c_str());
    return 0;
  }
  return 1;
}

}  // namespace cubeflow::tools
