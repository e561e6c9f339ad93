// `cubeflow digs mcmc|speed`: the DIGS five-parameter model (papers 002/003) and its MCMC
// baseline on held-out spectra; see docs/digs.md.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include "commands.hpp"
#include "cubeflow/sim/digs.hpp"
#include "cubeflow/sim/digs_fit.hpp"
#include "cubeflow/sim/digs_library.hpp"
#include "cubeflow/spectral/stats.hpp"

namespace cubeflow::tools {

namespace {

struct ModelArgs {
  std::string ssp = "builtin", emiles_dir, maraston_dir;
  double log_z_min = -2.0;
  bool central = false;  ///< draw from the central 16-84 % of every prior (library only)
};

void AddModelOptions(CLI::App* app, ModelArgs* a) {
  app->add_option("--ssp", a->ssp, "SSP grid: builtin, emiles (E-MILES BaSTI Kroupa + young extension) or a directory");
  app->add_option("--emiles-dir", a->emiles_dir,
                  "E-MILES directory for --ssp emiles (default: $CUBEFLOW_DATA_DIR/ssp/emiles_basti_kb)");
  app->add_option("--maraston-dir", a->maraston_dir,
                  "Maraston (2005) directory for --ssp emiles (default: $CUBEFLOW_DATA_DIR/ssp/maraston05_kroupa)");
  app->add_option("--log-z-min", a->log_z_min, "lower bound of the log Z/Z_sun prior (paper: -2.0)");
}

/// `--theta A,B,C,D,E`: one parameter set (DigsTheta order, tau in Gyr).
void AddThetaOption(CLI::App* app, std::vector<double>* theta, const std::string& doc) {
  app->add_option("--theta", *theta, doc)->delimiter(',')->expected(sim::kDigsNumParams);
}

bool PriorContains(const ModelArgs& a, const sim::DigsTheta& t) {
  sim::DigsPrior p;
  p.log_z_min = a.log_z_min;
  return p.Contains(t);
}

Result<std::shared_ptr<const sim::DigsModel>> MakeModel(const ModelArgs& a) {
  sim::SspSource src;
  src.ssp = a.ssp;
  src.emiles_dir = a.emiles_dir;
  src.maraston_dir = a.maraston_dir;
  sim::DigsConfig c;
  c.prior.log_z_min = a.log_z_min;
  if (a.central) c.prior = c.prior.Central(0.16, 0.84);
  return sim::BuildDigsModel(src, c);
}

int Speed(const ModelArgs& a, int n) {
  auto m = MakeModel(a);
  if (!m.ok()) { std::cerr << "cubeflow digs speed: " << m.status().message() << "\n"; return 2; }
  const auto& model = **m;
  std::vector<sim::DigsTheta> thetas(256);
  for (size_t i = 0; i < thetas.size(); ++i) {
    sim::Rng rng(1, i, 0);
    thetas[i] = model.config().prior.Draw(rng);
  }
  std::vector<double> out(model.wave().size());
  double sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    model.Render(thetas[static_cast<size_t>(i) % thetas.size()], out.data());
    sink += out[70];
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("DIGS forward model (%s, %zu pixels, %zu age bins x %zu [M/H]): %.2f us per noise-free spectrum "
              "(%d renders, one thread; checksum %.3g)\n",
              model.ssp().name.c_str(), model.wave().size(), model.age_edges().size() - 1, model.ssp().n_metal(),
              1e6 * s / n, n, sink);
  return 0;
}

int Mcmc(const ModelArgs& a, int n, uint64_t seed, const sim::DigsFitOptions& fo, const std::string& out_path,
         const std::vector<double>& fixed_theta) {
  auto m = MakeModel(a);
  if (!m.ok()) { std::cerr << "cubeflow digs mcmc: " << m.status().message() << "\n"; return 2; }
  const auto& model = **m;
  const auto& names = sim::DigsParamNames();
  if (!fixed_theta.empty())
    std::printf("# %d noise realisations of log_mass %.2f, log_z %.2f, dust %.2f, t_age %.2f Gyr, tau %.2f Gyr\n", n,
                fixed_theta[0], fixed_theta[1], fixed_theta[2], fixed_theta[3], fixed_theta[4]);
  std::printf("# DIGS MCMC baseline: %d held-out spectra (seed %llu), SSP %s ([M/H] %.2f..%.2f), %d walkers, "
              "%d x %d annealing + %d burn + %d kept iterations, thin %d, DE moves %.2f\n",
              n, static_cast<unsigned long long>(seed), model.ssp().name.c_str(), model.grid_log_z_min(),
              model.grid_log_z_max(), fo.n_walkers, fo.anneal_stages, fo.anneal_iterations, fo.n_burn, fo.n_steps, fo.thin, fo.de_fraction);
  std::ofstream tsv;
  if (!out_path.empty()) {
    tsv.open(out_path);
    if (!tsv) { std::cerr << "cubeflow digs mcmc: cannot write " << out_path << "\n"; return 1; }
    tsv << "index";
    for (const auto& p : names) tsv << "\t" << p << "_true\t" << p << "_q16\t" << p << "_q50\t" << p << "_q84";
    tsv << "\tacceptance\tmax_autocorr\tlp_gap\tseconds\n";
  }
  std::vector<std::vector<double>> truth(sim::kDigsNumParams), med(sim::kDigsNumParams), half(sim::kDigsNumParams);
  std::vector<int> in68(sim::kDigsNumParams, 0), in95(sim::kDigsNumParams, 0);
  double total_s = 0;
  int unconverged = 0;
  std::printf("%5s", "obj");
  for (const auto& p : names) std::printf(" %21s", (p + " true/med/hw").c_str());
  std::printf(" %5s %6s %7s %6s\n", "acc", "tau", "lp_gap", "sec");
  for (int i = 0; i < n; ++i) {
    sim::DigsObject obj;
    if (fixed_theta.empty()) {
      model.Simulate(seed, i, &obj);
    } else {  // noise realisation i of the given parameters
      model.SimulateNoise(sim::DigsTheta::FromArray(fixed_theta.data()), seed, i, &obj);
    }
    sim::DigsFitOptions o = fo;
    o.seed = seed * 1000003ULL + static_cast<uint64_t>(i);
    auto post = sim::FitDigsMcmc(model, obj.flux.data(), o);
    if (!post.ok()) { std::cerr << "cubeflow digs mcmc: object " << i << ": " << post.status().message() << "\n"; return 1; }
    const auto t = obj.theta.ToArray();
    // The truth's log posterior minus the best the chain found: > 0 means the chain missed the
    // mode around the truth (a local mode, or not converged).
    const std::array<double, sim::kDigsNumParams> tc = {t[0], t[1], t[2], t[3], std::log10(t[4])};
    double lp_chain = -1e300;
    for (double v : post->chain.log_prob) lp_chain = std::max(lp_chain, v);
    const double lp_gap = sim::DigsLogPosterior(model, tc, obj.flux.data()) - lp_chain;
    double tau_max = 0;
    std::printf("%5d", i);
    for (int d = 0; d < sim::kDigsNumParams; ++d) {
      truth[d].push_back(t[d]);
      med[d].push_back(post->q50[d]);
      half[d].push_back(0.5 * (post->q84[d] - post->q16[d]));
      in68[d] += (t[d] >= post->q16[d] && t[d] <= post->q84[d]);
      in95[d] += (t[d] >= post->q025[d] && t[d] <= post->q975[d]);
      tau_max = std::max(tau_max, post->autocorr[d]);
      std::printf(" %6.2f/%6.2f/%6.3f", t[d], post->q50[d], 0.5 * (post->q84[d] - post->q16[d]));
    }
    const bool converged = fo.n_steps >= 50 * tau_max;
    unconverged += !converged;
    total_s += post->seconds;
    std::printf(" %5.2f %6.0f %7.1f %6.1f%s\n", post->acceptance, tau_max, lp_gap, post->seconds,
                converged ? "" : " (n_steps < 50 tau)");
    std::fflush(stdout);
    if (tsv) {
      tsv << i;
      for (int d = 0; d < sim::kDigsNumParams; ++d)
        tsv << "\t" << t[d] << "\t" << post->q16[d] << "\t" << post->q50[d] << "\t" << post->q84[d];
      tsv << "\t" << post->acceptance << "\t" << tau_max << "\t" << lp_gap << "\t" << post->seconds << "\n";
    }
  }
  std::printf("\n# summary over %d spectra (R2 and Spearman of the posterior median against the truth; coverage: "
              "fraction of truths inside the central 68 / 95 %% intervals; hw: (q84 - q16) / 2)\n", n);
  std::printf("%-9s %7s %8s %7s %7s %9s %9s\n", "param", "R2", "Spearman", "cov68", "cov95", "median_hw", "rms_err");
  for (int d = 0; d < sim::kDigsNumParams; ++d) {
    // With --theta the truths do not vary: no R2 or ranking (printed as nan).
    auto sk = spectral::SkillOf(truth[d], med[d]);
    if (!fixed_theta.empty()) sk.r2 = sk.spearman = std::nan("");
    double se = 0;
    for (size_t k = 0; k < truth[d].size(); ++k) se += (med[d][k] - truth[d][k]) * (med[d][k] - truth[d][k]);
    std::printf("%-9s %7.3f %8.3f %7.2f %7.2f %9.3f %9.3f\n", names[d].c_str(), sk.r2, sk.spearman,
                static_cast<double>(in68[d]) / n, static_cast<double>(in95[d]) / n, spectral::Median(half[d]),
                std::sqrt(se / n));
  }
  std::printf("wall time: %.2f s per spectrum (%d spectra, %.1f s in all); %d of %d chains shorter than 50 "
              "autocorrelation times\n",
              total_s / n, n, total_s, unconverged, n);
  return 0;
}

int Library(const ModelArgs& a, int64_t n, uint64_t seed, const std::string& out,
            const std::vector<double>& fixed_theta) {
  auto m = MakeModel(a);
  if (!m.ok()) { std::cerr << "cubeflow digs library: " << m.status().message() << "\n"; return 2; }
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<sim::DigsTheta> fixed;
  if (!fixed_theta.empty()) fixed = sim::DigsTheta::FromArray(fixed_theta.data());
  auto st = sim::WriteDigsLibrary(**m, seed, n, a.ssp, out, 65536, fixed ? &*fixed : nullptr);
  if (!st.ok()) { std::cerr << "cubeflow digs library: " << st.message() << "\n"; return 1; }
  std::printf("wrote %s: %lld spectra (%s, seed %llu) in %.1f s\n", out.c_str(), static_cast<long long>(n),
              (*m)->ssp().name.c_str(), static_cast<unsigned long long>(seed),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace

int DigsCommand(int argc, char** argv) {
  CLI::App app{"The DIGS five-parameter spectral model (Khullar et al. 2022) and its MCMC baseline (docs/digs.md)",
               "cubeflow digs"};
  app.require_subcommand(1);
  ModelArgs margs;
  auto* mc = app.add_subcommand("mcmc", "simulate held-out spectra and fit each with the ensemble MCMC; prints "
                                        "medians and widths against the truth, R2, coverage and wall time");
  AddModelOptions(mc, &margs);
  int n = 20;
  uint64_t seed = 20262002;
  std::string out;
  sim::DigsFitOptions fo;
  mc->add_option("--n", n, "number of spectra")->check(CLI::Range(1, 100000));
  mc->add_option("--seed", seed, "simulation seed of the held-out spectra (keep it apart from training seeds)");
  mc->add_option("--walkers", fo.n_walkers, "ensemble walkers (even, >= 10)");
  mc->add_option("--burn", fo.n_burn, "burn-in iterations");
  mc->add_option("--steps", fo.n_steps, "kept iterations");
  mc->add_option("--thin", fo.thin, "thinning of the kept iterations");
  mc->add_option("--de-fraction", fo.de_fraction, "share of differential-evolution moves (0: stretch moves only)");
  mc->add_option("--anneal-stages", fo.anneal_stages, "tempered burn-in stages (0: none)");
  mc->add_option("--anneal-iterations", fo.anneal_iterations, "iterations per tempered stage");
  mc->add_option("--init-draws", fo.n_init_draws, "prior draws among which the walkers start");
  mc->add_option("--out", out, "also write one TSV row per spectrum here");
  std::vector<double> fixed_theta;
  AddThetaOption(mc, &fixed_theta,
                 "fit N noise realisations of these parameters instead of prior draws: "
                 "log_mass,log_z,dust,t_age,tau (e.g. the paper's Fig. 3 galaxy 10.51,-0.41,0.65,1.63,0.11)");
  auto* sp = app.add_subcommand("speed", "time the noise-free forward model (one thread)");
  ModelArgs sargs;
  AddModelOptions(sp, &sargs);
  int n_render = 20000;
  sp->add_option("--n", n_render, "renders")->check(CLI::Range(1, 100000000));
  auto* lb = app.add_subcommand("library", "write a training or test library: noisy physical-flux spectra and "
                                           "their five parameters (row i = object i of --seed; docs/digs.md)");
  ModelArgs largs;
  AddModelOptions(lb, &largs);
  int64_t lib_n = 1000;
  uint64_t lib_seed = 0;
  std::string lib_out;
  lb->add_option("--n", lib_n, "number of spectra")->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  lb->add_option("--seed", lib_seed, "simulation seed (training, test and MCMC sets need different seeds)")
      ->required();
  lb->add_option("--out", lib_out, "output FITS file (written atomically)")->required();
  lb->add_flag("--central", largs.central,
               "draw from the central 16-84 % of every prior (paper 003's test set; the header's PLO/PHI say so)");
  std::vector<double> lib_theta;
  AddThetaOption(lb, &lib_theta,
                 "write N noise realisations of these parameters instead of prior draws (the spectra `cubeflow "
                 "digs mcmc --theta` fits with the same --seed): log_mass,log_z,dust,t_age,tau");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto inside_prior = [](const char* cmd, const ModelArgs& a, const std::vector<double>& theta) {
    if (theta.empty() || PriorContains(a, sim::DigsTheta::FromArray(theta.data()))) return true;
    std::cerr << "cubeflow digs " << cmd << ": --theta lies outside the Table 1 prior (log_mass 8-13, log_z "
              << a.log_z_min << "-0.2, dust 0.1-10, t_age 0-4 Gyr, tau 0.1-1 Gyr)\n";
    return false;
  };
  if (mc->parsed()) {
    if (!inside_prior("mcmc", margs, fixed_theta)) return 2;
    return Mcmc(margs, n, seed, fo, out, fixed_theta);
  }
  if (lb->parsed()) {
    if (!inside_prior("library", largs, lib_theta)) return 2;
    return Library(largs, lib_n, lib_seed, lib_out, lib_theta);
  }
  return Speed(sargs, n_render);
}

}  // namespace cubeflow::tools
