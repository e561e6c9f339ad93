// LoadSimConfig / SimConfigToYaml: one list of keys read and written alike.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cubeflow/sim/observables.hpp"

namespace cubeflow::sim {
namespace {

std::string WriteConfig(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/cubeflow_sim_config_" + name + ".yaml";
  std::ofstream(path) << text;
  return path;
}

TEST(SimConfig, WrittenYamlReadsBackToTheSameConfig) {
  SimConfig c;
  c.ssp_name_contains = "Mun1.30";
  c.sfh.total_mass = 2e7;
  c.sfh.w_skewnormal = 123;
  c.sfh.ssfr_log_uniform = true;
  c.sfh.cosmology.h0 = 67.5;
  c.sfh.clip_to_universe_age = true;
  c.sfh.burst_frac_max = 0.2;
  c.sfh.z_sun = 0.02;
  c.dust.enabled = false;
  c.dust.bc_age_gyr = 0.02;
  c.nebular.f_esc = 0.1;
  c.obs.wave = WavelengthAxis::Linear(4000.0, 2.0, 100);
  c.obs.lsf = "none";
  c.obs.ages_per_step = 2;
  c.obs.bands = {"F555W", "F814W"};
  c.noise.snr = {5, 10};
  c.noise.phot_snr = 20;
  const std::string yaml = SimConfigToYaml(c);
  EXPECT_NE(yaml.find("spectrum: {wave_start: 4000, wave_step: 2, n_wave: 100,"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("bands: [F555W, F814W]"), std::string::npos) << yaml;
  auto back = LoadSimConfig(WriteConfig("roundtrip", yaml));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(SimConfigToYaml(*back), yaml);
  EXPECT_EQ(back->ssp_name_contains, "Mun1.30");
  EXPECT_TRUE(back->sfh.ssfr_log_uniform);
  EXPECT_TRUE(back->sfh.clip_to_universe_age);
  EXPECT_FALSE(back->dust.enabled);
  EXPECT_DOUBLE_EQ(back->sfh.cosmology.h0, 67.5);
  EXPECT_EQ(back->obs.wave.n, 100);
  EXPECT_DOUBLE_EQ(back->obs.wave.At(99), 4198.0);
  EXPECT_EQ(back->obs.bands, (std::vector<std::string>{"F555W", "F814W"}));
  EXPECT_EQ(back->noise.snr, (std::vector<double>{5, 10}));
}

TEST(SimConfig, DenseBasisPriorAndConstantMetallicityKeys) {
  auto r = LoadSimConfig(WriteConfig(
      "db", "mixture: {nonparametric: 0, skewnormal: 9000, skewnormal_burst: 6000, dense_basis: 150000}\n"
            "dense_basis: {dirichlet_alpha: 5, ssfr_min: 1.0e-17, ssfr_max: 3.16e-8, ssfr_distribution: log-uniform,"
            " tail_fraction: 0.02}\n"
            "metallicity: {law: constant, mh_min: -2.3, mh_max: 0.4}\n"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_DOUBLE_EQ(r->sfh.w_dense_basis, 150000);
  EXPECT_DOUBLE_EQ(r->sfh.w_nonparametric, 0);
  EXPECT_DOUBLE_EQ(r->sfh.db_dirichlet_alpha, 5);
  EXPECT_DOUBLE_EQ(r->sfh.db_ssfr_min, 1e-17);
  EXPECT_TRUE(r->sfh.db_ssfr_log_uniform);
  EXPECT_DOUBLE_EQ(r->sfh.db_tail_fraction, 0.02);
  EXPECT_TRUE(r->sfh.constant_metallicity);
  EXPECT_DOUBLE_EQ(r->sfh.mh_min, -2.3);
  auto back = LoadSimConfig(WriteConfig("db_back", SimConfigToYaml(*r)));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(SimConfigToYaml(*back), SimConfigToYaml(*r));
  // The defaults keep the PCHIP non-parametric kind and eq. 2.
  SimConfig d;
  EXPECT_DOUBLE_EQ(d.sfh.w_dense_basis, 0);
  EXPECT_FALSE(d.sfh.constant_metallicity);
  auto bad = LoadSimConfig(WriteConfig("db_law", "metallicity: {law: linear}\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("metallicity.law must be enrichment"), std::string::npos);
  bad = LoadSimConfig(WriteConfig("db_ssfr", "dense_basis: {ssfr_min: 0}\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dense_basis.ssfr_min must be > 0"), std::string::npos);
  bad = LoadSimConfig(WriteConfig("db_w", "mixture: {dense_basis: -1}\n"));
  ASSERT_FALSE(bad.ok());
  bad = LoadSimConfig(WriteConfig("db_mh", "metallicity: {law: constant, mh_min: 0.5, mh_max: 0.4}\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mh_min must be <= mh_max"), std::string::npos);
}

TEST(SimConfig, ErrorsNameTheFileAndTheKey) {
  auto r = LoadSimConfig(WriteConfig("unknown", "dust: {tau_bc_mni: 1}\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown key 'dust.tau_bc_mni'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("cubeflow_sim_config_unknown.yaml"), std::string::npos);
  r = LoadSimConfig(WriteConfig("type", "burst: {age_min: abc}\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("key 'burst.age_min' has the wrong type"), std::string::npos)
      << r.status().message();
  r = LoadSimConfig(WriteConfig("dist", "nonparametric: {ssfr_distribution: gaussian}\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nonparametric.ssfr_distribution must be uniform or log-uniform"),
            std::string::npos);
  r = LoadSimConfig(WriteConfig("grid", "spectrum: {wave_step: -1}\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("spectrum.wave_step must be > 0"), std::string::npos);
  r = LoadSimConfig(WriteConfig("top", "bogus: 1\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown key 'bogus'"), std::string::npos);
}

}  // namespace
}  // namespace cubeflow::sim
