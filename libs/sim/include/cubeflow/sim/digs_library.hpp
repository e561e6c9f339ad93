#pragma once
/// \file digs_library.hpp
/// \brief Training and test libraries of the DIGS model (digs.hpp): noisy physical-flux spectra
/// with their five parameters, as one FITS file (docs/digs.md, "NPE").
///
/// Layout: an empty primary HDU with the provenance (CFVERS, DIGSSEED, DIGSN, DIGSSSP, the model
/// settings), a float64 image WAVE (pixel centres, Angstrom) and a binary table DIGS with columns
/// FLUX (n_wave float32 per row, 1e-17 erg/s/cm^2/A at DigsConfig::distance_mpc, with the 5 %
/// noise), LOG_MASS, LOG_Z, DUST, T_AGE (Gyr) and LOG_TAU (log10 of tau in Gyr), float64.
/// Row i is DigsModel::Simulate(seed, i): a library of n rows with seed s is the first n objects
/// of `cubeflow digs mcmc --seed s`.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cubeflow/sim/digs.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::sim {

/// Column names of the five parameters, in DigsTheta order (the last is log10 tau).
const std::array<std::string, kDigsNumParams>& DigsLibraryColumns();

/// \brief A library in memory.
struct DigsLibrary {
  int64_t n = 0, n_wave = 0;
  std::vector<double> wave;    ///< n_wave pixel centres, Angstrom
  std::vector<float> flux;     ///< n x n_wave, row-major
  std::vector<double> theta;   ///< n x 5: log_mass, log_z, dust, t_age, log10 tau
  std::map<std::string, std::string> header;  ///< primary-header provenance (key -> value text)
};

/// Writes rows 0..n-1 of seed `seed` to `path` atomically, generating and writing `chunk` rows at
/// a time (memory bounded by the chunk). `ssp_label` is recorded (e.g. "builtin"). With `fixed`,
/// row i is noise realisation i of those parameters instead (DigsModel::SimulateNoise, the
/// spectra `cubeflow digs mcmc --theta` fits; header DIGSFIX = T).
Status WriteDigsLibrary(const DigsModel& model, uint64_t seed, int64_t n, const std::string& ssp_label,
                        const std::string& path, int64_t chunk = 65536, const DigsTheta* fixed = nullptr);

/// Reads a library (at most `max_rows` rows when > 0). Errors name the file, HDU and column.
Result<DigsLibrary> ReadDigsLibrary(const std::string& path, int64_t max_rows = -1);

}  // namespace cubeflow::sim
