#pragma once
/// \file spectrum_fields.hpp
/// \brief Per-bin facts the inference nodes pass on from their input spectrum to their results,
/// so the MAPS product's per-bin table says which kinematics and normalisation each bin used.
#include "cubeflow/data.hpp"

namespace cubeflow::inference {

inline void AddSpectrumFields(const Spectrum& s, Record* rec) {
  auto get = [&](const char* k) -> const double* {
    auto it = s.meta.find(k);
    return it == s.meta.end() ? nullptr : &it->second;
  };
  if (const double* v = get("velocity"))
    rec->Set("v_used", *v, "km/s", "line-of-sight velocity (relative to z_sys) used to rest-frame the bin");
  if (const double* v = get("dispersion"))
    rec->Set("sigma_used", *v, "km/s", "stellar velocity dispersion of the bin used for the broadening");
  if (s.norm > 0) {
    const double* sc = get("bunit_scale");
    rec->Set("flux_norm", s.norm * (sc ? *sc : 1.0), sc ? "erg/s/cm**2/Angstrom" : "",
             "mean flux density of the bin in the normalisation window (spectra and photometry were divided by it)");
  }
}

}  // namespace cubeflow::inference
