// photometry.hst_match's parameters: declared once (options struct), and the cross-parameter
// checks that `cubeflow validate` runs, each reported on the parameter at fault.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "cubeflow/testing/fake_context.hpp"
#include "hst_match.hpp"

namespace {

using namespace cubeflow;
using namespace cubeflow::photometry;

/// The spec's check report for `given` parameters over the defaults.
CheckReport Checks(const std::map<std::string, Value>& given) {
  const NodeSpec spec = HstMatchNode::Spec();
  return spec.RunChecks(cubeflow::testing::DefaultParams(spec, given));
}

/// The messages of the errors on `param`.
std::vector<std::string> ErrorsOn(const CheckReport& r, const std::string& param) {
  std::vector<std::string> v;
  for (const auto& i : r.issues())
    if (i.is_error && i.param == param) v.push_back(i.message);
  return v;
}

TEST(HstMatchOptions, DefaultsComeFromTheOptionsStruct) {
  const NodeSpec spec = HstMatchNode::Spec();
  EXPECT_EQ(std::get<double>(spec.FindParam("psf_muse_fwhm")->default_value()), PsfOptions{}.muse_fwhm);
  EXPECT_EQ(std::get<std::vector<double>>(spec.FindParam("psf_hst_fwhm")->default_value()),
            std::vector<double>{PsfOptions{}.hst_fwhm});
  EXPECT_EQ(std::get<int64_t>(spec.FindParam("strip_rows")->default_value()), BandOptions{}.strip_rows);
  EXPECT_EQ(spec.FindParam("directory")->type(), ParamType::kPath);
  EXPECT_EQ(std::get<std::string>(spec.FindParam("combine")->default_value()), "sum");
  // Every parameter is bound to HstMatchOptions: the node is built from the bound struct.
  auto node = cubeflow::testing::MakeNode<HstMatchNode>(
      {{"directory", std::string("/data/hst")}, {"pattern", std::string("{band_lower}.fits")},
       {"bands", std::vector<std::string>{"F336W", "F814W"}}});
  EXPECT_EQ(static_cast<HstMatchNode&>(*node).paths(),
            (std::vector<std::string>{"/data/hst/f336w.fits", "/data/hst/f814w.fits"}));
}

TEST(HstMatchOptions, CrossParameterFaultsAreReportedOnTheParameter) {
  // The defaults with a directory pass.
  EXPECT_FALSE(Checks({{"directory", std::string("hst")}}).has_errors());
  // Nowhere to look.
  auto e = ErrorsOn(Checks({}), "directory");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("set `directory`"), std::string::npos) << e[0];
  // Band lists.
  e = ErrorsOn(Checks({{"directory", std::string("hst")}, {"bands", std::vector<std::string>{}}}), "bands");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("is empty"), std::string::npos) << e[0];
  e = ErrorsOn(Checks({{"directory", std::string("hst")}, {"bands", std::vector<std::string>{"F555W", "f555w"}}}),
               "bands");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("band F555W is listed twice"), std::string::npos) << e[0];
  e = ErrorsOn(Checks({{"images", std::vector<std::string>{"a.fits"}}}), "images");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("has 1 entries for 5 bands"), std::string::npos) << e[0];
  // Per-band lists: one per band (psf_hst_fwhm may also be one value).
  const CheckReport r = Checks({{"directory", std::string("hst")},
                                {"zeropoints", std::vector<double>{25.0, 26.0}},
                                {"pivots", std::vector<double>{5000.0}},
                                {"psf_hst_fwhm", std::vector<double>{0.1, 0.1}}});
  for (const char* p : {"zeropoints", "pivots", "psf_hst_fwhm"}) {
    e = ErrorsOn(r, p);
    ASSERT_EQ(e.size(), 1u) << p;
    EXPECT_NE(e[0].find("for 5 bands"), std::string::npos) << e[0];
  }
  EXPECT_FALSE(Checks({{"directory", std::string("hst")}, {"psf_hst_fwhm", std::vector<double>{0.1}}}).has_errors());
  // A Gaussian MUSE PSF no wider than the HST one cannot be matched (known before the run).
  e = ErrorsOn(Checks({{"directory", std::string("hst")}, {"psf_muse_fwhm", 0.1}, {"psf_hst_fwhm", std::vector<double>{0.12}}}),
               "psf_hst_fwhm");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("is not below psf_muse_fwhm 0.1"), std::string::npos) << e[0];
  EXPECT_FALSE(Checks({{"directory", std::string("hst")}, {"psf_muse_fwhm", 0.0}, {"psf_hst_fwhm", std::vector<double>{0.12}}})
                   .has_errors());  // no matching
  // Building the node runs the same checks; the message names the parameter.
  try {
    cubeflow::testing::MakeNode<HstMatchNode>({{"images", std::vector<std::string>{"a.fits"}}});
    FAIL() << "expected an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("images: has 1 entries for 5 bands"), std::string::npos) << err.what();
    EXPECT_EQ(std::string(err.what()).find("photometry.hst_match"), std::string::npos) << err.what();
  }
}

}  // namespace
