// Inputs the fuzzers (tests/fuzz) found to crash cubeflow::sim, made readable: each must now be a
// clear error that names the file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cubeflow/sim/observables.hpp"
#include "cubeflow/sim/ssp.hpp"

namespace cubeflow::sim {
namespace {

class SimConfigFile {
 public:
  explicit SimConfigFile(const std::string& yaml) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cubeflow-sim-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    path_ = dir_ + "/sim.yaml";
    std::ofstream(path_) << yaml;
  }
  ~SimConfigFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

std::string LoadError(const std::string& yaml, std::string* path = nullptr) {
  SimConfigFile f(yaml);
  if (path) *path = f.path();
  auto r = LoadSimConfig(f.path());
  return r.ok() ? std::string("(loaded)") : r.status().message();
}

// A section that is a scalar threw YAML::BadSubscript out of LoadSimConfig
// (tests/fuzz/regressions/sim_config/non_mapping_section.yaml).
TEST(SimConfigHostile, SectionThatIsNotAMappingIsAnError) {
  std::string path;
  std::string e = LoadError("mixture: 5\n", &path);
  EXPECT_EQ(e.find(path + ":1: 'mixture' must be a mapping of keys to values"), 0u) << e;
  e = LoadError("just a scalar\n", &path);
  EXPECT_EQ(e.find(path + ":1: the top level must be a mapping"), 0u) << e;
  e = LoadError("noise: {enabled: false}\nspectrum: [1, 2]\n", &path);
  EXPECT_EQ(e.find(path + ":2: 'spectrum' must be a mapping"), 0u) << e;
  // An empty section is no section.
  EXPECT_EQ(LoadError("mixture:\nnoise: {enabled: false}\n"), "(loaded)");
}

// A key that is a list or a mapping threw YAML::TypedBadConversion.
TEST(SimConfigHostile, KeyThatIsNotANameIsAnError) {
  std::string path;
  const std::string e = LoadError("dust:\n  enabled: true\n  [a, b]: 1\n", &path);
  EXPECT_EQ(e.find(path + ":3: a key of 'dust' is not a name"), 0u) << e;
}

// Errors of the error-spectrum file did not name the configuration that points to it.
TEST(SimConfigHostile, ErrorSpectrumErrorsNameTheConfiguration) {
  std::string path;
  const std::string e = LoadError("noise: {error_spectrum: missing.txt}\n", &path);
  EXPECT_EQ(e.find(path + ": noise.error_spectrum: cannot open"), 0u) << e;
  EXPECT_NE(e.find("missing.txt"), std::string::npos) << e;
}

// Hundreds of digits made std::stod throw std::out_of_range out of ParseSspFileName
// (tests/fuzz/regressions/ssp_filename/fwhm_300_digits); a finite Z of 1e307 still gave an
// infinite [M/H] (regressions/ssp_filename/bc03_z_1e307).
TEST(SspFileNameHostile, NumberTooLongForADoubleIsAnError) {
  const std::string digits(400, '9');
  for (const std::string& name : {"Mun1.30Zp0.00T10.0000_FWHM_" + digits + ".fits",
                                  "Mun1.30Zp0.00T" + digits + ".0.fits", "BC03_z0.02_a" + digits + ".0.fits",
                                  "BC03_z1" + std::string(307, '0') + ".0_a1.0.fits"}) {
    auto r = ParseSspFileName(name);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_NE(r.status().message().find("out of range"), std::string::npos) << r.status().message();
  }
  // Many digits that are still a double are fine; so is an age that underflows to zero (an error).
  auto r = ParseSspFileName("Mun1.30Zp0.00T10." + std::string(300, '0') + "1.fits");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_DOUBLE_EQ(r->age_gyr, 10.0);
  EXPECT_FALSE(ParseSspFileName("Mun1.30Zp0.00T0." + std::string(400, '0') + "1.fits").ok());
}

}  // namespace
}  // namespace cubeflow::sim
