// 2-D FITS image reader (CFITSIO): whole images (maps) and blocks of rows (large HST mosaics).
#include "cubeflow/fits/image_io.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/strings.hpp"
#include "fits_util.hpp"

namespace cubeflow::fits {

using internal::CfitsioError;
using internal::FitsHandle;
using internal::Unquote;

struct ImageReader::Impl {
  FitsHandle f;
  int naxis = 0;
};

namespace {

bool IsInteger(const std::string& s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

/// Every keyword of the current HDU: key -> unquoted value; and the raw card of each key.
void ReadAllKeys(fitsfile* f, std::map<std::string, std::string>& keys, std::map<std::string, std::string>* cards) {
  int status = 0, nkeys = 0, more = 0;
  if (fits_get_hdrspace(f, &nkeys, &more, &status)) {
    fits_clear_errmsg();
    return;
  }
  for (int i = 1; i <= nkeys; ++i) {
    char card[FLEN_CARD] = {0}, name[FLEN_KEYWORD] = {0}, value[FLEN_VALUE] = {0}, comment[FLEN_COMMENT] = {0};
    status = 0;
    if (fits_read_record(f, i, card, &status)) break;
    int len = 0;
    if (fits_get_keyname(card, name, &len, &status) || len == 0) { status = 0; continue; }
    const std::string key = Upper(Trim(name));
    if (key == "COMMENT" || key == "HISTORY" || key.empty()) continue;
    status = 0;
    if (fits_parse_value(card, value, comment, &status)) { status = 0; continue; }
    if (!keys.count(key)) keys[key] = Unquote(value);
    if (cards && !cards->count(key)) (*cards)[key] = card;
  }
  fits_clear_errmsg();
}

/// True for the keywords of a 2-D celestial WCS (primary description, axes 1 and 2), including
/// the PV parameters and the SIP distortion polynomials.
bool IsWcsKey(const std::string& k) {
  static const char* kExact[] = {"CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2",
                                 "CDELT1", "CDELT2", "CROTA2", "CD1_1",  "CD1_2",  "CD2_1",  "CD2_2",  "PC1_1",
                                 "PC1_2",  "PC2_1",  "PC2_2",  "LONPOLE", "LATPOLE", "RADESYS", "RADECSYS",
                                 "EQUINOX", "EPOCH", "A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER"};
  for (const char* e : kExact)
    if (k == e) return true;
  auto digits_underscore_digits = [](const std::string& s) {  // "p_q"
    const size_t u = s.find('_');
    return u != std::string::npos && u > 0 && u + 1 < s.size() && IsInteger(s.substr(0, u)) &&
           IsInteger(s.substr(u + 1));
  };
  if ((k.rfind("PV1_", 0) == 0 || k.rfind("PV2_", 0) == 0) && IsInteger(k.substr(4))) return true;
  for (const char* p : {"A_", "B_", "AP_", "BP_"}) {
    const std::string pre(p);
    if (k.rfind(pre, 0) == 0 && digits_underscore_digits(k.substr(pre.size()))) return true;
  }
  return false;
}

std::string ShapeText(int naxis, const long long* dims) {
  std::string out;
  for (int i = 0; i < naxis; ++i) {
    if (i) out += "x";
    out += std::to_string(dims[i]);
  }
  return out.empty() ? "no data" : out;
}

}  // namespace

ImageReader::~ImageReader() = default;

std::string ImageReader::Where() const { return "'" + path_ + "' HDU '" + hdu_name_ + "'"; }

Result<std::unique_ptr<ImageReader>> ImageReader::Open(const std::string& path, const std::string& extension,
                                                      const std::vector<std::string>& auto_names) {
  std::unique_ptr<ImageReader> r(new ImageReader());
  r->impl_ = std::make_unique<Impl>();
  r->path_ = path;
  CUBEFLOW_RETURN_NOT_OK(internal::OpenForReading(path, "image", r->impl_->f));
  fitsfile* f = r->impl_->f.get();
  int status = 0;
  // Catalogue of HDUs: names, image dimensions.
  int nhdu = 0;
  status = internal::CountHdus(f, &nhdu);
  struct HduInfo {
    std::string name;
    int type = 0, naxis = 0;
    long long dims[9] = {0};
  };
  std::vector<HduInfo> hdus;
  for (int i = 1; i <= nhdu; ++i) {
    HduInfo h;
    status = 0;
    if (fits_movabs_hdu(f, i, &h.type, &status)) break;
    char buf[FLEN_VALUE] = {0};
    int s2 = 0;
    if (fits_read_key(f, TSTRING, "EXTNAME", buf, nullptr, &s2) == 0) h.name = Trim(buf);
    else h.name = i == 1 ? "PRIMARY" : "#" + std::to_string(i - 1);
    if (h.type == IMAGE_HDU) {
      s2 = 0;
      fits_get_img_dim(f, &h.naxis, &s2);
      h.naxis = std::min(h.naxis, 9);
      fits_get_img_sizell(f, h.naxis, h.dims, &s2);
      if (s2) h.naxis = 0;
    }
    hdus.push_back(h);
  }
  fits_clear_errmsg();
  for (size_t i = 0; i < hdus.size(); ++i) {
    if (!r->hdu_list_.empty()) r->hdu_list_ += ", ";
    const HduInfo& h = hdus[i];
    r->hdu_list_ += h.name + (h.type == IMAGE_HDU ? " (image " + ShapeText(h.naxis, h.dims) + ")" : " (table)");
    if (h.type == IMAGE_HDU && h.name.rfind('#', 0) != 0) r->extnames_.push_back(Upper(h.name));
  }
  auto is_image2 = [](const HduInfo& h) {
    if (h.type != IMAGE_HDU || h.naxis < 2) return false;
    for (int a = 2; a < h.naxis; ++a)
      if (h.dims[a] != 1) return false;
    return true;
  };
  int chosen = -1;  // 0-based index into hdus
  const std::string ext = Trim(extension);
  if (ext.empty() || Upper(ext) == "AUTO") {
    for (const auto& n : auto_names) {
      for (size_t i = 0; i < hdus.size() && chosen < 0; ++i)
        if (hdus[i].type == IMAGE_HDU && Upper(hdus[i].name) == Upper(n)) chosen = static_cast<int>(i);
      if (chosen >= 0) break;
    }
    if (chosen < 0) {
      for (size_t i = 0; i < hdus.size() && chosen < 0; ++i)
        if (hdus[i].type == IMAGE_HDU && hdus[i].naxis >= 2) chosen = static_cast<int>(i);
    }
    if (chosen < 0)
      return Status::Error("no image HDU in '" + path + "' (HDUs: " + r->hdu_list_ +
                           "); the file holds no 2-D image");
  } else if (IsInteger(ext)) {
    const int n = std::atoi(ext.c_str());
    if (n < 0 || n >= static_cast<int>(hdus.size()))
      return Status::Error("'" + path + "' has no HDU number " + ext + " (HDUs 0-" +
                           std::to_string(static_cast<int>(hdus.size()) - 1) + ": " + r->hdu_list_ + ")");
    chosen = n;
  } else {
    for (size_t i = 0; i < hdus.size() && chosen < 0; ++i)
      if (hdus[i].type == IMAGE_HDU && Upper(hdus[i].name) == Upper(ext)) chosen = static_cast<int>(i);
    if (chosen < 0)
      return Status::Error("no image extension '" + ext + "' in '" + path + "' (HDUs: " + r->hdu_list_ +
                           "); set the extension to one of them");
  }
  const HduInfo& h = hdus[static_cast<size_t>(chosen)];
  r->hdu_index_ = chosen;
  r->hdu_name_ = h.name;
  if (h.type != IMAGE_HDU)
    return Status::Error(r->Where() + " is a table, not an image (HDUs: " + r->hdu_list_ + ")");
  if (!is_image2(h))
    return Status::Error(r->Where() + " is a " + std::to_string(h.naxis) + "-D image (" +
                         ShapeText(h.naxis, h.dims) + "), expected a 2-D image" +
                         (h.naxis < 2 ? " (the HDU holds no image data; choose another extension: " + r->hdu_list_ + ")"
                                      : ""));
  r->nx_ = h.dims[0];
  r->ny_ = h.dims[1];
  r->impl_->naxis = h.naxis;
  if (r->nx_ <= 0 || r->ny_ <= 0) return Status::Error(r->Where() + " has an empty axis");

  // Header: primary first (fallback keys), then the image HDU (cards kept for the WCS).
  int type = 0;
  status = 0;
  fits_movabs_hdu(f, 1, &type, &status);
  if (chosen != 0) ReadAllKeys(f, r->primary_keys_, nullptr);
  status = 0;
  if (fits_movabs_hdu(f, chosen + 1, &type, &status))
    return Status::Error("cannot move to " + r->Where() + ": " + CfitsioError(status));
  if (const std::string why = internal::ImageBeyondFile(f, h.naxis, h.dims); !why.empty())
    return Status::Error(r->Where() + " " + why);
  std::map<std::string, std::string> cards;
  ReadAllKeys(f, r->keys_, &cards);
  if (chosen == 0) r->primary_keys_ = r->keys_;

  // Celestial WCS cards.
  if (cards.count("CTYPE1") && cards.count("CTYPE2")) {
    std::string w;
    w += MakeCard("NAXIS", "2");
    w += MakeCard("NAXIS1", std::to_string(r->nx_));
    w += MakeCard("NAXIS2", std::to_string(r->ny_));
    w += MakeCard("WCSAXES", "2");
    bool have_frame = false, have_equinox = false;
    const std::string ctype1 = Upper(r->keys_["CTYPE1"]);
    const bool sip = ctype1.size() > 4 && ctype1.compare(ctype1.size() - 4, 4, "-SIP") == 0;
    for (const auto& [k, card] : cards) {
      if (!IsWcsKey(k)) continue;
      const bool sip_key = k.rfind("A_", 0) == 0 || k.rfind("B_", 0) == 0 || k.rfind("AP_", 0) == 0 ||
                           k.rfind("BP_", 0) == 0;
      if (sip_key && !sip) continue;  // SIP coefficients only with CTYPEi = '...-SIP
      if (k == "RADESYS" || k == "RADECSYS") {
        if (have_frame) continue;
        w += MakeCard("RADESYS", FitsString(r->keys_.at(k)));
        have_frame = true;
        continue;
      }
      if (k == "EQUINOX" || k == "EPOCH") {
        if (have_equinox) continue;
        char* end = nullptr;
        const double v = std::strtod(r->keys_.at(k).c_str(), &end);
        if (end && *end == '\0') {
          w += MakeCard("EQUINOX", FitsReal(v));
          have_equinox = true;
        }
        continue;
      }
      std::string c = card;
      c.resize(80, ' ');
      w += c;
    }
    if (!have_frame) {
      for (const char* k : {"RADESYS", "RADECSYS"}) {
        auto it = r->primary_keys_.find(k);
        if (it != r->primary_keys_.end()) {
          w += MakeCard("RADESYS", FitsString(it->second));
          break;
        }
      }
    }
    if (!have_equinox) {
      for (const char* k : {"EQUINOX", "EPOCH"}) {
        auto it = r->primary_keys_.find(k);
        char* end = nullptr;
        if (it == r->primary_keys_.end()) continue;
        const double v = std::strtod(it->second.c_str(), &end);
        if (end && *end == '\0') {
          w += MakeCard("EQUINOX", FitsReal(v));
          break;
        }
      }
    }
    r->wcs_.cards = std::move(w);
  }
  return r;
}

std::optional<std::string> ImageReader::Key(const std::string& key, bool primary_fallback) const {
  const std::string k = Upper(key);
  if (auto it = keys_.find(k); it != keys_.end()) return it->second;
  if (!primary_fallback) return std::nullopt;
  if (auto it = primary_keys_.find(k); it != primary_keys_.end()) return it->second;
  return std::nullopt;
}

std::optional<double> ImageReader::KeyDouble(const std::string& key, bool primary_fallback) const {
  std::optional<std::string> s = Key(key, primary_fallback);
  if (!s) return std::nullopt;
  // FITS allows 'D' exponents.
  for (char& c : *s)
    if (c == 'D' || c == 'd') c = 'E';
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s->c_str(), &end);
  if (s->empty() || !end || *end != '\0' || errno) return std::nullopt;
  return v;
}

bool ImageReader::HasExtension(const std::string& name) const {
  return std::find(extnames_.begin(), extnames_.end(), Upper(name)) != extnames_.end();
}

Status ImageReader::ReadBlock(int64_t y0, int64_t nrows, std::vector<double>& out, int64_t x0, int64_t ncols) {
  if (ncols < 0) ncols = nx_ - x0;
  if (y0 < 0 || nrows < 0 || y0 + nrows > ny_ || x0 < 0 || ncols < 0 || x0 + ncols > nx_)
    return Status::Error("reading " + Where() + ": block rows " + std::to_string(y0) + "+" + std::to_string(nrows) +
                         ", columns " + std::to_string(x0) + "+" + std::to_string(ncols) + " is outside the " +
                         std::to_string(nx_) + "x" + std::to_string(ny_) + " image");
  out.resize(static_cast<size_t>(nrows * ncols));
  if (nrows == 0 || ncols == 0) return Status::OK();
  long fp[9], lp[9], inc[9];
  for (int a = 0; a < 9; ++a) fp[a] = lp[a] = inc[a] = 1;
  fp[0] = static_cast<long>(x0 + 1);
  lp[0] = static_cast<long>(x0 + ncols);
  fp[1] = static_cast<long>(y0 + 1);
  lp[1] = static_cast<long>(y0 + nrows);
  double nul = std::numeric_limits<double>::quiet_NaN();
  int anynul = 0, status = 0;
  if (fits_read_subset(impl_->f, TDOUBLE, fp, lp, inc, &nul, out.data(), &anynul, &status))
    return Status::Error("reading rows " + std::to_string(y0) + "-" + std::to_string(y0 + nrows - 1) + " of " +
                         Where() + " failed: " + CfitsioError(status) + "; the file is probably truncated or corrupt");
  return Status::OK();
}

Result<std::shared_ptr<Map>> ReadMap(const std::string& path, const std::string& extension, const std::string& bunit,
                                     const std::string& name) {
  CUBEFLOW_ASSIGN_OR_RETURN(std::unique_ptr<ImageReader> r, ImageReader::Open(path, extension));
  auto m = std::make_shared<Map>();
  m->nx = r->nx();
  m->ny = r->ny();
  m->nplanes = 1;
  try {
    m->data.reserve(static_cast<size_t>(m->nx * m->ny));
  } catch (const std::bad_alloc&) {
    return Status::Error("not enough memory for the " + std::to_string(m->nx) + "x" + std::to_string(m->ny) +
                         " image " + r->Where());
  }
  CUBEFLOW_RETURN_NOT_OK(r->ReadBlock(0, r->ny(), m->data));
  m->name = !name.empty() ? name : (r->hdu_name() == "PRIMARY" || r->hdu_name().rfind('#', 0) == 0 ? "MAP" : r->hdu_name());
  if (!bunit.empty()) m->bunit = bunit;
  else if (auto b = r->Key("BUNIT", false)) m->bunit = *b;
  m->wcs = r->wcs();
  if (auto object = r->Key("OBJECT")) m->header["OBJECT"] = *object;
  m->header["SRCFILE"] = path;
  m->header["SRCHDU"] = r->hdu_name();
  return m;
}

}  // namespace cubeflow::fits
