#pragma once
/// \file library.hpp
/// \brief Training/test libraries of simulated spectra, photometry and labels: the in-memory
/// form used by training and evaluation, and the FITS file form written by
/// `cubeflow simulate library` (readable by astropy).

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::sim {

/// Number of age bins of the SFH (Galceran et al. 2026).
inline constexpr int kNumAgeBins = 16;
/// Number of mass-formation percentiles (10 %, 20 % ... 90 %) used as SBI targets.
inline constexpr int kNumMassPercentiles = 9;

/// \brief N simulated objects. Row-major arrays: element (i, j) at i * width + j.
struct LibraryData {
  WavelengthAxis wave;                  ///< model grid of the spectra (default 4800-7000 A, 1.25 A)
  double norm_min = 5300, norm_max = 5500;  ///< normalisation window, Angstrom
  double sigma_target = 150;            ///< total dispersion of the spectra, km/s
  std::vector<std::string> bands;       ///< photometric bands (may be empty)
  std::vector<double> pivots;           ///< pivot wavelengths, Angstrom
  std::vector<double> age_bin_centres;  ///< Gyr, kNumAgeBins values
  std::vector<double> age_bin_edges;    ///< Gyr, kNumAgeBins + 1 values
  std::string ssp_name;                 ///< SSP library used
  int64_t n = 0;
  std::vector<float> spectra;           ///< n x wave.n, normalised flux (noisy)
  std::vector<float> spectra_err;       ///< n x wave.n, 1-sigma noise (may be empty)
  std::vector<float> photometry;        ///< n x bands, normalised like the spectrum
  std::vector<float> photometry_err;    ///< n x bands
  std::vector<float> mass_frac;         ///< n x 16, sums to 1
  std::vector<float> light_frac;        ///< n x 16, V-band light fraction, sums to 1
  std::vector<float> zh;                ///< n x 16, mean [Z/H] of the mass formed in each bin
  std::vector<float> t_mass;            ///< n x 9, cosmic time (Gyr) at which 10..90 % of mass formed
  std::vector<float> snr;               ///< n, S/N of the noise applied
  std::vector<float> tau_bc, tau_ism;   ///< n, dust optical depths drawn
  std::vector<int32_t> sfh_kind;        ///< n: 0 non-parametric, 1 skew-normal, 2 skew-normal + burst, 3 Dense Basis
  std::vector<float> z_final;           ///< n: Z_final of eq. 2 (absolute Z)
  std::map<std::string, std::string> meta;  ///< seed, config, version, ...
};

class ForwardModel;

/// \brief Options of GenerateLibrary.
struct LibraryWriteOptions {
  int64_t chunk_rows = 4096;  ///< rows simulated and written at a time (bounds memory)
  int threads = 0;            ///< TBB threads (0 = all cores)
  /// Called after each chunk with (rows done, total); may be empty.
  std::function<void(int64_t, int64_t)> progress;
  std::map<std::string, std::string> extra_meta;  ///< added to the primary header / meta
};

struct SimulatedObject;
/// \brief An empty library of `n` rows with `model`'s grid, bands, age bins and config metadata.
LibraryData NewLibrary(const ForwardModel& model, int64_t n);
/// \brief Copies one simulated object into row `row` of `data` (spectra, photometry, labels).
void SetLibraryRow(const SimulatedObject& object, int64_t row, LibraryData* data);
/// \brief Simulates objects [first, first + count) of a run seeded with `seed` in memory
/// (parallel with TBB; identical results for any thread count). Fills every field incl. metadata.
LibraryData SimulateLibrary(const ForwardModel& model, int64_t first, int64_t count, uint64_t seed,
                            int threads = 0);

/// \brief Simulates `n` objects and writes the FITS library at `path`, chunk by chunk (memory is
/// O(chunk_rows)). Layout: primary header (metadata: NOBJ, SEED, SSPNAME, NWAVE, CRVAL1, CDELT1,
/// NORMMIN, NORMMAX, SIGMA, NBANDS, BANDi, PIVOTi, AGECnn, AGEEnn, SNRLIST, ...), image HDUs WAVE
/// (float64, n_wave), SPECTRA and SPEC_ERR (float32, n x n_wave), PHOT and PHOT_ERR (float32,
/// n x n_bands; absent when there are no bands), BINTABLE LABELS (MASS_FRAC 16E, LIGHT_FRAC 16E,
/// ZH 16E, T_MASS 9E, SNR E, TAU_BC E, TAU_ISM E, SFH_KIND J, Z_FINAL E), BINTABLE CONFIG (the
/// YAML config, one line per row). Written to `<path>.tmp` and renamed into place.
Status GenerateLibrary(const ForwardModel& model, int64_t n, uint64_t seed, const std::string& path,
                       const LibraryWriteOptions& options = {});

/// \brief Writes an in-memory library (same layout as GenerateLibrary).
Status WriteLibrary(const std::string& path, const LibraryData& data);

/// \brief Reads rows [first, first + count) of a library file (count < 0: all).
Result<LibraryData> ReadLibrary(const std::string& path, int64_t first = 0, int64_t count = -1);
/// \brief Number of rows in a library file without reading the arrays.
Result<int64_t> LibrarySize(const std::string& path);

}  // namespace cubeflow::sim
