// custom.line_index: one absorption-line index per bin spectrum.
#include "line_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <cubeflow/spectral/spectral_ops.hpp>  // from cubeflow::spectral (LIBS in CMakeLists.txt)
#include <cubeflow/strings.hpp>

namespace custom {

using namespace cubeflow;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Good pixels of one band: index and overlap with the band (Angstrom, spectrum frame).
struct BandPixels {
  std::vector<std::pair<size_t, double>> pixels;
  double lo = 0, hi = 0;  ///< band in the spectrum's frame
  double good = 0;        ///< summed overlap of the good pixels
  double mean = 0;        ///< overlap-weighted mean flux of the good pixels
  double centre = 0;      ///< overlap-weighted mean wavelength of the good pixels
};

bool Good(const Spectrum& s, size_t i) {
  if (!s.mask.empty() && s.mask[i] != 0) return false;
  if (!std::isfinite(s.flux[i])) return false;
  return s.variance.empty() || (std::isfinite(s.variance[i]) && s.variance[i] >= 0);
}

/// The good pixels overlapping [lo, hi]; `edges` are the n + 1 pixel edges.
BandPixels Collect(const Spectrum& s, const std::vector<double>& edges, double lo, double hi) {
  BandPixels b;
  b.lo = lo;
  b.hi = hi;
  double sum = 0, sum_lambda = 0;
  const size_t n = edges.size() - 1;
  size_t i = static_cast<size_t>(std::upper_bound(edges.begin(), edges.end(), lo) - edges.begin());
  i = i > 0 ? i - 1 : 0;
  for (; i < n && edges[i] < hi; ++i) {
    const double o = std::min(hi, edges[i + 1]) - std::max(lo, edges[i]);
    if (o <= 0 || !Good(s, i)) continue;
    b.pixels.emplace_back(i, o);
    b.good += o;
    sum += o * s.flux[i];
    sum_lambda += o * s.wave.At(static_cast<int64_t>(i));
  }
  b.mean = b.good > 0 ? sum / b.good : kNaN;
  b.centre = b.good > 0 ? sum_lambda / b.good : kNaN;
  return b;
}

}  // namespace

const std::vector<IndexBands>& LickIndices() {
  // name, band, blue continuum, red continuum, magnitude (Trager et al. 1998, Table 2).
  static const std::vector<IndexBands> kIndices = {
      {"Hbeta", 4847.875, 4876.625, 4827.875, 4847.875, 4876.625, 4891.625, false},
      {"Fe5015", 4977.750, 5054.000, 4946.500, 4977.750, 5054.000, 5065.250, false},
      {"Mg1", 5069.125, 5134.125, 4895.125, 4957.625, 5301.125, 5366.125, true},
      {"Mg2", 5154.125, 5196.625, 4895.125, 4957.625, 5301.125, 5366.125, true},
      {"Mgb", 5160.125, 5192.625, 5142.625, 5161.375, 5191.375, 5206.375, false},
      {"Fe5270", 5245.650, 5285.650, 5233.150, 5248.150, 5285.650, 5318.150, false},
      {"Fe5335", 5312.125, 5352.125, 5304.625, 5315.875, 5353.375, 5363.375, false},
      {"Fe5406", 5387.500, 5415.000, 5376.250, 5387.500, 5415.000, 5425.000, false},
      {"Fe5709", 5696.625, 5720.375, 5672.875, 5696.625, 5722.875, 5736.625, false},
      {"Fe5782", 5776.625, 5796.625, 5765.375, 5775.375, 5797.875, 5811.625, false},
      {"NaD", 5876.875, 5909.375, 5860.625, 5875.625, 5922.125, 5948.125, false},
      {"TiO1", 5936.625, 5994.125, 5816.625, 5849.125, 6038.625, 6103.625, true},
      {"TiO2", 6189.625, 6272.125, 6066.625, 6141.625, 6372.625, 6415.125, true},
  };
  return kIndices;
}

const IndexBands* FindLickIndex(const std::string& name) {
  for (const auto& b : LickIndices())
    if (b.name == name) return &b;
  return nullptr;
}

IndexMeasurement MeasureIndex(const Spectrum& s, const IndexBands& bands, double z) {
  const size_t n = s.flux.size();
  if (n < 2 || static_cast<int64_t>(n) != s.wave.n)
    throw Error("spectrum has " + std::to_string(n) + " pixels but its wavelength axis " + std::to_string(s.wave.n));
  if (!s.variance.empty() && s.variance.size() != n)
    throw Error("spectrum has " + std::to_string(n) + " flux but " + std::to_string(s.variance.size()) + " variance pixels");
  if (!s.mask.empty() && s.mask.size() != n)
    throw Error("spectrum has " + std::to_string(n) + " flux but " + std::to_string(s.mask.size()) + " mask pixels");

  // Band limits (rest frame, air) in the spectrum's frame: redshifted in vacuum, then back to
  // air if the spectrum is in air.
  const double stretch = s.rest_frame ? 1.0 : 1.0 + z;
  auto in_frame = [&](double lambda) {
    const double vac = spectral::AirToVacuum(lambda) * stretch;
    return s.wave.air ? spectral::VacuumToAir(vac) : vac;
  };
  const std::vector<double> edges = spectral::AxisEdges(s.wave);
  auto collect = [&](double lo, double hi, const char* what) {
    const double a = in_frame(lo), b = in_frame(hi);
    if (a < edges.front() || b > edges.back())
      throw Error("the " + std::string(what) + " of index " + bands.name + " (" + Num(lo, 7) + "-" + Num(hi, 7) +
                  " Angstrom rest frame, " + Num(a, 7) + "-" + Num(b, 7) + " in the spectrum's frame) is outside the spectrum (" +
                  Num(edges.front(), 7) + "-" + Num(edges.back(), 7) +
                  " Angstrom); choose an index inside it" + (s.rest_frame ? "" : ", or check z"));
    return Collect(s, edges, a, b);
  };
  const BandPixels blue = collect(bands.blue_lo, bands.blue_hi, "blue continuum band");
  const BandPixels red = collect(bands.red_lo, bands.red_hi, "red continuum band");
  const BandPixels centre = collect(bands.band_lo, bands.band_hi, "central band");

  IndexMeasurement m;
  m.good_fraction = std::min({blue.good / (blue.hi - blue.lo), red.good / (red.hi - red.lo),
                              centre.good / (centre.hi - centre.lo)});
  m.value = m.error = kNaN;
  if (blue.good <= 0 || red.good <= 0 || centre.good <= 0) return m;

  // Pseudo-continuum C(l) = Fb + (Fr - Fb) t, t = (l - lb) / (lr - lb), at the pixel centres;
  // R = <F / C> over the central band. lb, lr: where the band means are taken, the mean
  // wavelength of the pixels averaged (about the band midpoint when every pixel is good), so that a
  // straight continuum is recovered exactly, bad pixels or not.
  const double lb = blue.centre, lr = red.centre;
  if (!(lr > lb)) return m;
  double ratio = 0, sb = 0, sr = 0;  // R and dR/dFb, dR/dFr (with the sign below)
  std::vector<double> cont(centre.pixels.size());
  for (size_t k = 0; k < centre.pixels.size(); ++k) {
    const auto [i, o] = centre.pixels[k];
    const double t = (s.wave.At(static_cast<int64_t>(i)) - lb) / (lr - lb);
    const double c = blue.mean + (red.mean - blue.mean) * t;
    if (!(c > 0)) return m;  // no positive continuum: the index is undefined
    cont[k] = c;
    const double f = s.flux[i];
    ratio += o * f / c;
    sb += o * f * (1 - t) / (c * c);
    sr += o * f * t / (c * c);
  }
  ratio /= centre.good;
  sb /= centre.good;
  sr /= centre.good;
  const double width = bands.band_hi - bands.band_lo;
  if (bands.magnitude) {
    if (!(ratio > 0)) return m;
    m.value = -2.5 * std::log10(ratio);
  } else {
    m.value = width * (1.0 - ratio);
  }
  if (s.variance.empty()) return m;

  // First-order error: dR/dF_p for every pixel p (a pixel may sit in two overlapping bands).
  std::vector<double> grad(n, 0.0);
  for (size_t k = 0; k < centre.pixels.size(); ++k) {
    const auto [i, o] = centre.pixels[k];
    grad[i] += o / (cont[k] * centre.good);
  }
  for (const auto& [i, o] : blue.pixels) grad[i] -= sb * o / blue.good;
  for (const auto& [i, o] : red.pixels) grad[i] -= sr * o / red.good;
  double var = 0;
  for (size_t i = 0; i < n; ++i)
    if (grad[i] != 0) var += grad[i] * grad[i] * s.variance[i];
  const double sigma_ratio = std::sqrt(var);
  m.error = bands.magnitude ? 2.5 / std::log(10.0) * sigma_ratio / ratio : width * sigma_ratio;
  return m;
}

NodeSpec LineIndexNode::Spec() {
  std::vector<std::string> names;
  for (const auto& b : LickIndices()) names.push_back(b.name);
  std::vector<std::string> choices = names;
  choices.push_back("custom");
  return NodeSpec("custom.line_index", "Absorption-line index (Lick/IDS style) and its error per bin spectrum")
      .Describe("For every bin spectrum: the pseudo-continuum is the straight line through the mean "
                "fluxes of the blue and red side bands (at the mean wavelength of their good pixels, "
                "about the band midpoints); the index is the "
                "equivalent width (band width x (1 - <F/C>) over the central band, Angstrom, rest "
                "frame) or, for molecular indices, -2.5 log10 <F/C> (mag), as in Trager et al. "
                "(1998). Pixels count with their overlap with each band; masked or non-finite "
                "pixels are left out. The error propagates the variance through the continuum and "
                "the band mean to first order (pixels taken as independent: spectra rebinned by "
                "spectral.restframe have correlated pixels, so the error is then a lower bound). "
                "Bands are defined in air; they are converted to vacuum for vacuum spectra and "
                "redshifted by z for observed-frame spectra. No correction to the Lick/IDS "
                "resolution is applied: compare indices measured at one common dispersion (e.g. "
                "after spectral.restframe). Lick indices: " + Join(names) + ".")
      .Input("spectra", Spectrum::kType, PortKind::kStream,
             "bin spectra (binning.voronoi: observed frame; spectral.restframe: rest frame)")
      .Output("records", Record::kType, PortKind::kStream,
              "per bin: <name> and <name>_err (Angstrom or mag); the spectrum's quality bits are passed on")
      .Param(&LineIndexOptions::index, "index", "Lick index to measure, or custom (then band, blue and red)",
             OneOf{choices})
      .Param(&LineIndexOptions::band, "band", "custom central band [lo, hi] (air, rest frame)", Unit{"Angstrom"}, AtLeast{0})
      .Param(&LineIndexOptions::blue, "blue", "custom blue continuum band [lo, hi] (air, rest frame)", Unit{"Angstrom"}, AtLeast{0})
      .Param(&LineIndexOptions::red, "red", "custom red continuum band [lo, hi] (air, rest frame)", Unit{"Angstrom"}, AtLeast{0})
      .Param(&LineIndexOptions::magnitude, "magnitude", "custom index in magnitudes instead of an equivalent width")
      .Param(&LineIndexOptions::name, "name", "record field (map EXTNAME in upper case); \"\" = lower-case index name")
      .Param(&LineIndexOptions::z, "z", "redshift of observed-frame spectra (rest-frame spectra ignore it)", InRange{-0.01, 10})
      .Param(&LineIndexOptions::min_good_fraction, "min_good_fraction",
             "each band must be covered by good pixels to this fraction, else the index is NaN", InRange{0, 1})
      .Check<LineIndexOptions>([](const LineIndexOptions& o, CheckReport& r) {
        const std::pair<const char*, const std::vector<double>*> custom_bands[] = {
            {"band", &o.band}, {"blue", &o.blue}, {"red", &o.red}};
        if (o.index == "custom") {
          bool ok = true;
          for (const auto& [param, v] : custom_bands) {
            if (v->size() == 2 && (*v)[0] < (*v)[1]) continue;
            r.Error(param, "give [lo, hi] with lo < hi (Angstrom, air, rest frame) for index: custom");
            ok = false;
          }
          if (ok && !(o.blue[0] + o.blue[1] < o.red[0] + o.red[1]))
            r.Error("red", "the red continuum band must lie redward of the blue one");
          if (o.name.empty()) r.Error("name", "give the record field of a custom index (e.g. name: hbeta_narrow)");
        } else {
          for (const auto& [param, v] : custom_bands)
            if (!v->empty()) r.Warn(param, "ignored: index is " + o.index + " (use index: custom for your own bands)");
          if (o.magnitude) r.Warn("magnitude", "ignored: index is " + o.index + " (use index: custom)");
        }
        const bool valid_name = std::all_of(o.name.begin(), o.name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        });
        if (!valid_name) r.Error("name", "use lower-case letters, digits and _ (it becomes a map's EXTNAME); got '" + o.name + "'");
      });
}

LineIndexNode::LineIndexNode(const Options& options) : options_(options) {
  if (options_.index == "custom") {
    bands_ = IndexBands{options_.name, options_.band.at(0), options_.band.at(1), options_.blue.at(0),
                        options_.blue.at(1), options_.red.at(0), options_.red.at(1), options_.magnitude};
  } else if (const IndexBands* b = FindLickIndex(options_.index)) {
    bands_ = *b;
  } else {
    throw Error("index: unknown index '" + options_.index + "'");  // OneOf keeps pipelines from getting here
  }
  field_ = options_.name.empty() ? Lower(bands_.name) : options_.name;
}

void LineIndexNode::Process(ProcessContext& ctx) {
  const std::string unit = bands_.magnitude ? "mag" : "Angstrom";
  const std::string what = bands_.name + (bands_.magnitude ? " index (mag)" : " equivalent width (Angstrom, rest frame)");
  // One call per bin; looping over ctx.size() keeps the node correct if it is ever batched.
  for (size_t item = 0; item < ctx.size(); ++item) {
    auto spectrum = ctx.Input<Spectrum>("spectra", item);
    IndexMeasurement m = MeasureIndex(*spectrum, bands_, options_.z);  // throws: the runner names the bin
    if (m.good_fraction < options_.min_good_fraction) m.value = m.error = std::numeric_limits<double>::quiet_NaN();
    auto rec = std::make_shared<Record>();
    rec->id = ctx.key(item) >= 0 ? ctx.key(item) : spectrum->id;
    rec->quality = spectrum->quality;  // pass on what upstream nodes flagged
    rec->Set(field_, m.value, unit, what);
    rec->Set(field_ + "_err", m.error, unit, "1-sigma error of " + field_);
    ctx.Emit("records", rec, item);
  }
}

}  // namespace custom
