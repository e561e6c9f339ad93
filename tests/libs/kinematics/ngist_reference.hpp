#pragma once
// Reads the nGIST (GIST v3.1.0) tutorial run in shared/data/reference/ngist_tutorial_NGC0000
// (PROVENANCE.md #10): the 28 log-rebinned bin spectra pPXF fitted, their kinematics and the
// good pixels of the fit.
#include <fitsio.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "fits_test_util.hpp"

namespace kintest {

struct NgistRun {
  std::string dir, error;
  double z = 0, velscale = 0;
  int nbins = 0, npix = 0;
  std::vector<double> loglam;                 ///< ln(rest lambda) of the pixel centres
  std::vector<double> spec, espec;            ///< nbins x npix (row-major)
  std::vector<double> V, SIGMA, H3, H4, EV, ESIGMA, EH3, EH4;
  std::vector<int> goodpix;                   ///< 0-based indices fitted by pPXF
};

inline std::vector<double> ReadColumn(fitsfile* f, const char* ext, const char* col, long long nelem, std::string& err) {
  int st = 0, c = 0;
  if (fits_movnam_hdu(f, BINARY_TBL, const_cast<char*>(ext), 0, &st)) {
    err = std::string("no HDU ") + ext;
    return {};
  }
  if (fits_get_colnum(f, CASEINSEN, const_cast<char*>(col), &c, &st)) {
    err = std::string("no column ") + col + " in " + ext;
    return {};
  }
  long nrows = 0;
  fits_get_num_rows(f, &nrows, &st);
  const long long n = nelem > 0 ? nelem : nrows;
  std::vector<double> v(static_cast<size_t>(n));
  double nul = std::numeric_limits<double>::quiet_NaN();
  int anynul = 0;
  fits_read_col(f, TDOUBLE, c, 1, 1, n, &nul, v.data(), &anynul, &st);
  if (st) err = std::string("cannot read ") + ext + "." + col;
  return v;
}

inline NgistRun LoadNgist() {
  NgistRun g;
  g.dir = cftest::DataDir() + "/reference/ngist_tutorial_NGC0000";
  const std::string spec = g.dir + "/NGC0000Example_BinSpectra.fits", kin = g.dir + "/NGC0000Example_kin.fits",
                    best = g.dir + "/NGC0000Example_kin-bestfit.fits";
  for (const auto& p : {spec, kin, best, g.dir + "/CONFIG"})
    if (!std::filesystem::exists(p)) {
      g.error = "missing " + p;
      return g;
    }
  {
    std::ifstream in(g.dir + "/CONFIG");
    std::string line;
    while (std::getline(in, line))
      if (auto pos = line.find("REDSHIFT:"); pos != std::string::npos) g.z = std::stod(line.substr(pos + 9));
  }
  int st = 0;
  fitsfile* f = nullptr;
  if (fits_open_diskfile(&f, spec.c_str(), READONLY, &st)) {
    g.error = "cannot open " + spec;
    return g;
  }
  fits_read_key(f, TDOUBLE, "VELSCALE", &g.velscale, nullptr, &st);
  g.loglam = ReadColumn(f, "LOGLAM", "LOGLAM", 0, g.error);
  g.npix = static_cast<int>(g.loglam.size());
  long nrows = 0;
  int st2 = 0;
  fits_movnam_hdu(f, BINARY_TBL, const_cast<char*>("BIN_SPECTRA"), 0, &st2);
  fits_get_num_rows(f, &nrows, &st2);
  g.nbins = static_cast<int>(nrows);
  g.spec = ReadColumn(f, "BIN_SPECTRA", "SPEC", static_cast<long long>(g.nbins) * g.npix, g.error);
  g.espec = ReadColumn(f, "BIN_SPECTRA", "ESPEC", static_cast<long long>(g.nbins) * g.npix, g.error);
  fits_close_file(f, &st2);
  if (fits_open_diskfile(&f, kin.c_str(), READONLY, &st)) {
    g.error = "cannot open " + kin;
    return g;
  }
  g.V = ReadColumn(f, "KIN_DATA", "V", 0, g.error);
  g.SIGMA = ReadColumn(f, "KIN_DATA", "SIGMA", 0, g.error);
  g.H3 = ReadColumn(f, "KIN_DATA", "H3", 0, g.error);
  g.H4 = ReadColumn(f, "KIN_DATA", "H4", 0, g.error);
  g.EV = ReadColumn(f, "KIN_DATA", "FORM_ERR_V", 0, g.error);
  g.ESIGMA = ReadColumn(f, "KIN_DATA", "FORM_ERR_SIGMA", 0, g.error);
  g.EH3 = ReadColumn(f, "KIN_DATA", "FORM_ERR_H3", 0, g.error);
  g.EH4 = ReadColumn(f, "KIN_DATA", "FORM_ERR_H4", 0, g.error);
  fits_close_file(f, &st2);
  if (fits_open_diskfile(&f, best.c_str(), READONLY, &st)) {
    g.error = "cannot open " + best;
    return g;
  }
  for (double v : ReadColumn(f, "GOODPIX", "GOODPIX", 0, g.error)) g.goodpix.push_back(static_cast<int>(v));
  fits_close_file(f, &st2);
  if (g.error.empty() && (g.nbins != 28 || g.npix != 583 || g.V.size() != 28 || !(g.z > 0)))
    g.error = "unexpected sizes in the nGIST files";
  return g;
}

}  // namespace kintest
