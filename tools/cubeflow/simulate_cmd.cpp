// `cubeflow simulate library|galaxy ...`
#include <CLI/CLI.hpp>

#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "cubeflow/strings.hpp"
#include "simulate_ssp.hpp"
#include "cubeflow/sim/galaxy.hpp"
#include "cubeflow/sim/library.hpp"
#include "cubeflow/sim/observables.hpp"

namespace cubeflow::tools {

namespace {

/// Memory this machine has (MemAvailable, else physical memory), bytes; 0 if unknown.
double AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

std::string Gb(double bytes) {
  char b[32];
  if (bytes < 1e9)
    std::snprintf(b, sizeof b, "%.0f MB", bytes / 1e6);
  else
    std::snprintf(b, sizeof b, "%.1f GB", bytes / 1e9);
  return b;
}

/// The galaxy options that would make no sense (or no cube), with what to do; "" if fine.
std::string CheckGalaxyOptions(const sim::GalaxyConfig& g, const std::string& out_dir) {
  if (!std::isfinite(g.wave_start) || g.wave_start <= 0)
    return "--wave-start must be a positive wavelength in Angstrom (MUSE starts near 4750), got " + Num(g.wave_start);
  if (!std::isfinite(g.wave_step) || g.wave_step <= 0)
    return "--wave-step must be a positive channel width in Angstrom (MUSE: 1.25), got " + Num(g.wave_step);
  if (!std::isfinite(g.redshift) || g.redshift <= -0.1 || g.redshift > 5)
    return "--redshift must be a redshift between -0.1 and 5 (the mock is a nearby galaxy; PHANGS: ~0.001-0.01), got " +
           Num(g.redshift);
  if (!std::isfinite(g.wave_start + g.wave_step * static_cast<double>(g.nwave)))
    return "--wave-start + --nwave x --wave-step overflows; give a realistic wavelength range";
  // DATA and STAT (float32) are built in memory and written to disk.
  const double cube_bytes = 2.0 * 4.0 * static_cast<double>(g.nx) * static_cast<double>(g.ny) * static_cast<double>(g.nwave);
  const double mem = AvailableMemoryBytes();
  if (mem > 0 && cube_bytes > 0.8 * mem)
    return "--nx " + std::to_string(g.nx) + " --ny " + std::to_string(g.ny) + " --nwave " + std::to_string(g.nwave) +
           " needs " + Gb(cube_bytes) + " of memory for the cube (DATA + STAT), more than the " + Gb(mem) +
           " available here; simulate a smaller galaxy";
  struct statvfs fs {};
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::absolute(out_dir, ec);
  std::filesystem::path probe = dir;
  while (!probe.empty() && !std::filesystem::exists(probe, ec)) probe = probe.parent_path();
  if (!probe.empty() && ::statvfs(probe.c_str(), &fs) == 0) {
    const double free = static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize);
    // Besides the cube: the HST images (float32 at the HST pixel scale) and the truth maps
    // (float32, ~50 planes).
    const double spaxels = static_cast<double>(g.nx) * static_cast<double>(g.ny);
    const double hst_per_spaxel = std::pow(g.pixscale / g.hst_pixscale, 2);
    const double bytes =
        cube_bytes + 4.0 * spaxels * (hst_per_spaxel * static_cast<double>(g.bands.size()) + 50.0) + (1 << 20);
    if (bytes > free)
      return "the galaxy needs " + Gb(bytes) + " on disk (cube " + Gb(cube_bytes) + ", HST images and truth maps) but " +
             probe.string() + " has " + Gb(free) + " free; free some space or choose another --out";
  }
  return "";
}

}  // namespace

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
  std::string lib_ssp, emiles_dir, maraston_dir;
  lib->add_option("--ssp", lib_ssp, "SSP library, overriding the config's `ssp`: builtin, emiles or a directory");
  const char* kEmilesDirHelp = "E-MILES directory for --ssp emiles (default: $CUBEFLOW_DATA_DIR/ssp/emiles_basti_kb)";
  const char* kMarastonDirHelp =
      "Maraston (2005) directory for --ssp emiles (default: $CUBEFLOW_DATA_DIR/ssp/maraston05_kroupa)";
  lib->add_option("--emiles-dir", emiles_dir, kEmilesDirHelp);
  lib->add_option("--maraston-dir", maraston_dir, kMarastonDirHelp);

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
  gal->add_option("--ssp", g.ssp, "SSP library: builtin, emiles or a directory");
  gal->add_option("--emiles-dir", emiles_dir, kEmilesDirHelp);
  gal->add_option("--maraston-dir", maraston_dir, kMarastonDirHelp);
  gal->add_option("--threads", gthreads, "threads (0 = all cores)");
  gal->add_flag("--no-noise", no_noise, "write a noise-free DATA cube");
  gal->add_option("--layout", g.layout,
                  "spiral (default): bulge, optional bar, spiral arms with young bursts and H II regions, "
                  "inner and outer disc, optional post-starburst or quenched patch, each with its own history, "
                  "metallicity, dust and kinematics drawn from --seed (different seeds, different galaxies); "
                  "classic: the earlier smooth-field galaxy, the same pattern for every seed (see --histories)")
      ->check(CLI::IsMember({"spiral", "classic"}));
  gal->add_option("--histories", g.histories,
                  "--layout classic only: prior (default; one non-parametric history per spaxel, the training "
                  "prior's family) or components (old + disc + young-arm mixture, outside the prior)")
      ->check(CLI::IsMember({"prior", "components"}));
  std::string truth_lib, truth_lib_config;
  gal->add_option("--truth-library", truth_lib,
                  "also write every valid spaxel's history rendered as a training library would render it "
                  "(rest frame, model grid, normalised; noise only if the --library-config asks) to this FITS "
                  "file: `cubeflow evaluate MODEL FILE` then measures a model on the galaxy's histories");
  gal->add_option("--library-config", truth_lib_config,
                  "simulator YAML config of the truth library (default: the paper's recipe without noise)");

  auto* sspc = app.add_subcommand("ssp", "Describe an SSP set; for --ssp emiles, measure the join of E-MILES and "
                                         "its young extension and draw it (docs/forward_model.md)");
  SspReportOptions rep;
  sspc->add_option("--ssp", rep.ssp, "SSP library: builtin, emiles or a directory");
  sspc->add_option("--emiles-dir", rep.emiles_dir, kEmilesDirHelp);
  sspc->add_option("--maraston-dir", rep.maraston_dir, kMarastonDirHelp);
  sspc->add_option("--join-age", rep.join_age_gyr,
                   "emiles: E-MILES ages from this one on (Gyr, an E-MILES age; 0.06 is the nearest to the paper's "
                   "63 Myr)");
  sspc->add_option("--anchor-age", rep.anchor_age_gyr,
                   "emiles: age where Maraston's evolution is tied to E-MILES (Gyr, <= --join-age)");
  sspc->add_option("--young-min-age", rep.young_min_age_gyr, "emiles: youngest age of the extension (Gyr)");
  sspc->add_option("--bc03-dir", rep.bc03_dir,
                   "BC03 directory for the line-structure comparison in the figure (default: "
                   "$CUBEFLOW_DATA_DIR/ssp/bc03_mpajhu if present)");
  sspc->add_option("--figure", rep.figure, "write the join figure (PNG) here");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*sspc) return SimulateSspReport(rep);
  if (*lib) {
    SimConfig cfg;
    if (!config_path.empty()) {
      auto r = LoadSimConfig(config_path);
      if (!r.ok()) { std::cerr << "cubeflow simulate library: " << r.status().message() << "\n"; return 2; }
      cfg = *r;
    }
    if (!lib_ssp.empty()) cfg.ssp = lib_ssp;
    if (!emiles_dir.empty()) cfg.ssp_emiles_dir = emiles_dir;
    if (!maraston_dir.empty()) cfg.ssp_maraston_dir = maraston_dir;
    if (cfg.ssp == "emiles") {  // record the directories used in the library's CONFIG table
      auto dirs = ResolveEmilesDirs(SspSourceOf(cfg));
      if (!dirs.ok()) { std::cerr << "cubeflow simulate library: " << dirs.status().message() << "\n"; return 2; }
      cfg.ssp_emiles_dir = dirs->emiles_dir;
      cfg.ssp_maraston_dir = dirs->maraston_dir;
    }
    auto loaded = LoadSsp(SspSourceOf(cfg));
    if (!loaded.ok()) { std::cerr << "cubeflow simulate library: " << loaded.status().message() << "\n"; return 2; }
    std::shared_ptr<const SspGrid> ssp = *loaded;
    auto t0 = std::chrono::steady_clock::now();
    auto fm = ForwardModel::Build(ssp, cfg);
    if (!fm.ok()) { std::cerr << "cubeflow simulate library: " << fm.status().message() << "\n"; return 2; }
    if (!(*fm)->resolution_note().empty())
      std::cerr << "cubeflow simulate library: warning: " << (*fm)->resolution_note() << "\n";
    LibraryWriteOptions opt;
    opt.threads = threads;
    opt.chunk_rows = chunk;
    opt.extra_meta["command"] = "cubeflow simulate library --n " + std::to_string(n) + " --seed " + std::to_string(seed) +
                                (lib_ssp.empty() ? std::string() : " --ssp " + lib_ssp);
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
    if (const std::string bad = CheckGalaxyOptions(g, gdir); !bad.empty()) {
      std::cerr << "cubeflow simulate galaxy: " << bad << "\n";
      return 2;
    }
    g.noise = !no_noise;
    SspSource src;
    src.ssp = g.ssp;
    src.emiles_dir = emiles_dir;
    src.maraston_dir = maraston_dir;
    auto loaded = LoadSsp(src);
    if (!loaded.ok()) { std::cerr << "cubeflow simulate galaxy: " << loaded.status().message() << "\n"; return 2; }
    auto m = MockGalaxy::Build(g, *loaded);
    if (!m.ok()) { std::cerr << "cubeflow simulate galaxy: " << m.status().message() << "\n"; return 2; }
    for (const auto& line : (*m)->Describe()) std::fprintf(stderr, "%s\n", line.c_str());
    if (!(*m)->forward_model().resolution_note().empty())
      std::cerr << "cubeflow simulate galaxy: warning: " << (*m)->forward_model().resolution_note() << "\n";
    const Status st = (*m)->Write(gdir, gthreads);
    if (!st.ok()) { std::cerr << "cubeflow simulate galaxy: " << st.message() << "\n"; return 1; }
    if (!truth_lib.empty()) {
      SimConfig lc;
      lc.noise.enabled = false;
      lc.ssp = g.ssp;
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
      auto fm = ForwardModel::Build(*loaded, lc);
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
