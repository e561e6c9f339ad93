// The parts of CNN and SBI training that need no libtorch (see train_common.hpp).
#include "train_common.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>

#include "cubeflow/strings.hpp"

namespace cubeflow::nn {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------
// Messages and checks
// ---------------------------------------------------------------------------------------

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>((t / 60) % 60), static_cast<long long>(t % 60));
  return buf;
}

std::string SnrMix(const sim::LibraryData& lib) {
  if (lib.snr.empty()) return "unknown";
  std::map<long, int64_t> counts;
  for (float s : lib.snr) counts[std::isfinite(s) ? std::lround(s) : -1]++;
  std::ostringstream o;
  if (counts.size() > 12) {
    auto [mn, mx] = std::minmax_element(lib.snr.begin(), lib.snr.end());
    o << "continuous " << *mn << "-" << *mx;
    return o.str();
  }
  bool first = true;
  for (const auto& [snr, c] : counts) {
    o << (first ? "" : ", ") << snr << ": " << c;
    first = false;
  }
  return o.str();
}

std::string FormatEpochLine(const EpochReport& r) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "%s%sepoch %lld/%lld  train %.6f  val %.6f  best %.6f (epoch %lld)  lr %.3g  elapsed %s  eta %s%s",
                r.stage.c_str(), r.stage.empty() ? "" : " ", static_cast<long long>(r.epoch),
                static_cast<long long>(r.epochs), r.train_loss, r.val_loss, r.best_val,
                static_cast<long long>(r.best_epoch), r.lr, FormatDuration(r.elapsed_s).c_str(),
                FormatDuration(r.eta_s).c_str(), r.stopped_early ? "  (early stop)" : "");
  return buf;
}

Status CheckLibraryShapes(const sim::LibraryData& lib, const std::string& what, bool need_t_mass) {
  const int64_t n = lib.n, nw = lib.wave.n, nb = static_cast<int64_t>(lib.bands.size());
  if (n <= 0) return Status::Error(what + " is empty: simulate a library with rows (cubeflow simulate library)");
  auto check = [&](const std::vector<float>& v, int64_t width, const char* name) -> Status {
    if (static_cast<int64_t>(v.size()) == n * width) return Status::OK();
    return Status::Error(what + ": array " + name + " has " + std::to_string(v.size()) + " values, expected " +
                         std::to_string(n * width) + " (" + std::to_string(n) + " rows of " + std::to_string(width) +
                         "): the file is damaged or incomplete; simulate it again");
  };
  CUBEFLOW_RETURN_NOT_OK(check(lib.spectra, nw, "SPECTRA"));
  CUBEFLOW_RETURN_NOT_OK(check(lib.mass_frac, sim::kNumAgeBins, "MASS_FRAC"));
  CUBEFLOW_RETURN_NOT_OK(check(lib.zh, sim::kNumAgeBins, "ZH"));
  if (need_t_mass) CUBEFLOW_RETURN_NOT_OK(check(lib.t_mass, sim::kNumMassPercentiles, "T_MASS"));
  if (nb > 0) CUBEFLOW_RETURN_NOT_OK(check(lib.photometry, nb, "PHOT"));
  if (!lib.light_frac.empty()) CUBEFLOW_RETURN_NOT_OK(check(lib.light_frac, sim::kNumAgeBins, "LIGHT_FRAC"));
  if (!lib.spectra_err.empty()) CUBEFLOW_RETURN_NOT_OK(check(lib.spectra_err, nw, "SPEC_ERR"));
  return Status::OK();
}

inputs::InputConventions LibraryConventions(const sim::LibraryData& lib, bool photometry) {
  inputs::InputConventions c;
  c.wave = lib.wave;
  c.rest_frame = true;
  c.norm_min = lib.norm_min;
  c.norm_max = lib.norm_max;
  if (photometry) {
    c.bands = lib.bands;
    c.pivots = lib.pivots;
  }
  return c;
}

Status CheckLibraryFitsModel(const sim::LibraryData& lib, int64_t nwave, const std::vector<std::string>& model_bands) {
  if (lib.wave.n != nwave)
    return Status::Error("library spectra have " + std::to_string(lib.wave.n) + " pixels, the model expects " +
                         std::to_string(nwave) + ": simulate the library on the model's wavelength grid");
  if (!model_bands.empty() && lib.bands != model_bands)
    return Status::Error("the library's bands (" + Join(lib.bands, ", ", "none") + ") differ from the model's (" +
                         Join(model_bands) + "): simulate the library with the model's bands");
  return Status::OK();
}

// ---------------------------------------------------------------------------------------
// Data split
// ---------------------------------------------------------------------------------------

std::vector<int64_t> AllRows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(std::max<int64_t>(n, 0)));
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

Result<Split> SplitRows(int64_t n, uint64_t seed, double train_fraction, double val_fraction) {
  std::vector<int64_t> perm = AllRows(n);
  std::mt19937_64 rng(seed);
  std::shuffle(perm.begin(), perm.end(), rng);
  const int64_t n_train = std::max<int64_t>(1, std::llround(n * train_fraction));
  const int64_t n_val = std::max<int64_t>(1, std::llround(n * val_fraction));
  if (n_train + n_val > n)
    return Status::Error("the library has too few rows (" + std::to_string(n) + ") to split into " +
                         std::to_string(n_train) + " training and " + std::to_string(n_val) +
                         " validation rows: use a larger library or a larger max_rows");
  Split s;
  s.train.assign(perm.begin(), perm.begin() + n_train);
  s.val.assign(perm.begin() + n_train, perm.begin() + n_train + n_val);
  s.test.assign(perm.begin() + n_train + n_val, perm.end());
  return s;
}

// ---------------------------------------------------------------------------------------
// Epochs of a training stage
// ---------------------------------------------------------------------------------------

std::mt19937_64 EpochRng(uint64_t seed, int64_t epoch, uint64_t stage) {
  return std::mt19937_64(seed * 6364136223846793005ull + 1442695040888963407ull * (epoch + 1) +
                         0x9E3779B97F4A7C15ull * stage);
}

std::vector<int64_t> ShuffledRows(std::vector<int64_t> rows, uint64_t seed, int64_t epoch, uint64_t stage) {
  auto rng = EpochRng(seed, epoch, stage);
  std::shuffle(rows.begin(), rows.end(), rng);
  return rows;
}

std::optional<double> RunBatches(int64_t n, int64_t batch_size, int64_t max_batches, const volatile int* stop_flag,
                                 const std::function<double(size_t first, size_t count)>& step) {
  int64_t nbatch = (n + batch_size - 1) / batch_size;
  if (max_batches > 0) nbatch = std::min(nbatch, max_batches);
  double total = 0;
  int64_t seen = 0;
  for (int64_t bi = 0; bi < nbatch; ++bi) {
    if (stop_flag && *stop_flag) return std::nullopt;
    const size_t first = bi * batch_size, count = std::min<size_t>(batch_size, n - first);
    total += step(first, count) * count;
    seen += static_cast<int64_t>(count);
  }
  return total / std::max<int64_t>(seen, 1);
}

double ScheduledLr(double lr0, int64_t epoch, int64_t epochs, double scale) {
  return lr0 * std::max(1.0 - static_cast<double>(epoch) / epochs, 1e-3) * scale;
}

bool Plateau::Update(double val, int64_t epoch, int64_t lr_patience, double lr_factor) {
  if (val < best_val) {
    best_val = val;
    best_epoch = epoch;
    since_best = 0;
    since_lr = 0;
    return true;
  }
  ++since_best;
  if (++since_lr >= lr_patience) {
    lr_scale *= lr_factor;
    since_lr = 0;
  }
  return false;
}

RunClock::RunClock(double prior_seconds) : prior_(prior_seconds), start_(std::chrono::steady_clock::now()) {}

double RunClock::Elapsed() const {
  return prior_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

StageOutcome RunStage(const StageOptions& options, int64_t start_epoch, Plateau& plateau,
                      std::vector<double>& train_losses, std::vector<double>& val_losses, const RunClock& clock,
                      const StageSteps& steps, const ProgressFn& progress) {
  StageOutcome out;
  const auto stage_start = std::chrono::steady_clock::now();
  int64_t epoch = start_epoch;
  for (; epoch < options.epochs; ++epoch) {
    const double lr = ScheduledLr(options.lr, epoch, options.epochs, plateau.lr_scale);
    const std::optional<double> train_loss = steps.train_epoch(epoch, lr);
    if (!train_loss) {
      out.interrupted = true;
      break;
    }
    const double val_loss = steps.validate();
    train_losses.push_back(*train_loss);
    val_losses.push_back(val_loss);
    if (plateau.Update(val_loss, epoch + 1, options.lr_patience, options.lr_factor)) steps.keep_best();
    out.stopped_early = plateau.since_best >= options.stop_patience;
    steps.checkpoint(epoch + 1);
    if (progress) {
      const double stage_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - stage_start).count();
      EpochReport r;
      r.stage = options.name;
      r.epoch = epoch + 1;
      r.epochs = options.epochs;
      r.train_loss = *train_loss;
      r.val_loss = val_loss;
      r.best_val = plateau.best_val;
      r.best_epoch = plateau.best_epoch;
      r.lr = lr;
      r.elapsed_s = clock.Elapsed();
      r.eta_s = stage_s / (epoch + 1 - start_epoch) * (options.epochs - epoch - 1);
      r.stopped_early = out.stopped_early;
      progress(r);
    }
    if (out.stopped_early) {
      ++epoch;
      break;
    }
  }
  out.epochs_run = epoch;
  return out;
}

// ---------------------------------------------------------------------------------------
// `cubeflow train`
// ---------------------------------------------------------------------------------------

namespace {

constexpr const char* kUsage = "usage: cubeflow train CONFIG.yaml [--resume] [--threads N]\n";

volatile int g_stop_flag = 0;
extern "C" void OnSigint(int) { g_stop_flag = 1; }

/// Raises g_stop_flag on Ctrl-C while it lives.
class SigintScope {
 public:
  SigintScope() : old_(std::signal(SIGINT, OnSigint)) { g_stop_flag = 0; }
  ~SigintScope() { std::signal(SIGINT, old_); }
  SigintScope(const SigintScope&) = delete;
  SigintScope& operator=(const SigintScope&) = delete;
  const volatile int* flag() const { return &g_stop_flag; }

 private:
  void (*old_)(int);
};

int Fail(const std::string& message) {
  std::cerr << "cubeflow train: " << message << "\n";
  return 1;
}

}  // namespace

void TrainInvocation::Resolve(std::string& p) const {
  if (!p.empty() && fs::path(p).is_relative()) p = (base_dir / p).lexically_normal().string();
}

Status TrainInvocation::RequireLibrary(const std::string& library) const {
  if (library.empty()) return Status::Error(config_path + ": 'library' (the simulated library FITS file) is required");
  return Status::OK();
}

int RunTrainCommand(int argc, char** argv, const std::string& help,
                    const std::function<Result<TrainJob>(const TrainInvocation&)>& make_job) {
  TrainInvocation inv;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--resume") {
      inv.resume = true;
    } else if (a == "--threads" && i + 1 < argc) {
      char* end = nullptr;
      const long t = std::strtol(argv[++i], &end, 10);
      if (end == argv[i] || *end || t <= 0) {
        std::cerr << "cubeflow train: --threads takes a positive number, not '" << argv[i] << "'\n" << kUsage;
        return 2;
      }
      inv.threads = static_cast<int>(t);
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage << help << "\n";
      return 0;
    } else if (inv.config_path.empty() && !a.empty() && a[0] != '-') {
      inv.config_path = a;
    } else {
      std::cerr << "cubeflow train: unexpected argument '" << a << "'\n" << kUsage;
      return 2;
    }
  }
  if (inv.config_path.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  std::ifstream in(inv.config_path);
  if (!in) return Fail("cannot read " + inv.config_path + ": check the path of the configuration file");
  std::stringstream text;
  text << in.rdbuf();
  inv.config_text = text.str();
  inv.base_dir = fs::absolute(inv.config_path).parent_path();

  auto job = make_job(inv);
  if (!job.ok()) return Fail(job.status().message());
  Result<sim::LibraryData> lib = sim::LibraryData{};
  if (job->library.empty()) {  // a model that needs no library (the diffusion prior draws its own set)
    std::cerr << "cubeflow train: " << job->kind_note << "\n";
  } else {
    std::cerr << "cubeflow train: reading " << job->library << "\n";
    lib = sim::ReadLibrary(job->library, 0, job->max_rows);
    if (!lib.ok()) return Fail(lib.status().message());
    std::cerr << "cubeflow train: " << job->kind_note << lib->n << " objects, " << lib->wave.n << " pixels, "
              << (job->photometry ? lib->bands.size() : 0) << " bands; S/N mix " << SnrMix(*lib) << "\n";
  }
  Result<TrainOutcome> outcome = Status::Error("not run");
  {
    SigintScope sigint;
    outcome = job->run(*lib, [](const EpochReport& r) { std::fprintf(stderr, "%s\n", FormatEpochLine(r).c_str()); },
                       sigint.flag());
  }
  if (!outcome.ok()) return Fail(outcome.status().message());
  std::cerr << "cubeflow train: " << outcome->message << "\n";
  if (outcome->interrupted) return 130;
  for (const auto& [k, v] : outcome->test_metrics) std::cerr << "  test " << k << " = " << v << "\n";
  return 0;
}

}  // namespace cubeflow::nn
