#!/usr/bin/python3
"""Writes the generated seed inputs of tests/fuzz/corpus (tiny FITS files and WCS card sets).

    /usr/bin/python3 tests/fuzz/make_seeds.py

Everything here is synthetic (a few pixels each); no file is copied from real data. The text
seeds (pipelines, BUNIT strings, SSP names, simulator configs) are committed as they are.
"""
import os

import numpy as np
from astropy.io import fits

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def out(target, name):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


def celestial(h, nx=3, ny=2, cd=True, frame=True):
    h["CTYPE1"] = "RA---TAN"
    h["CTYPE2"] = "DEC--TAN"
    h["CUNIT1"] = "deg"
    h["CUNIT2"] = "deg"
    h["CRVAL1"] = 53.16
    h["CRVAL2"] = -27.78
    h["CRPIX1"] = nx / 2
    h["CRPIX2"] = ny / 2
    if cd:
        h["CD1_1"] = -5.55e-5
        h["CD1_2"] = 0.0
        h["CD2_1"] = 0.0
        h["CD2_2"] = 5.55e-5
    else:
        h["CDELT1"] = -5.55e-5
        h["CDELT2"] = 5.55e-5
        h["PC1_1"] = 0.9
        h["PC1_2"] = -0.1
        h["PC2_1"] = 0.1
        h["PC2_2"] = 0.9
    if frame:
        h["RADESYS"] = "FK5"
        h["EQUINOX"] = 2000.0


def spectral(h, ctype="AWAV", crval=4750.0, step=1.25, unit="Angstrom", cd=True):
    h["CTYPE3"] = ctype
    h["CUNIT3"] = unit
    h["CRVAL3"] = crval
    h["CRPIX3"] = 1.0
    h["CD3_3" if cd else "CDELT3"] = step


def cube_seeds():
    rng = np.random.default_rng(1)
    nz, ny, nx = 5, 2, 3
    flux = rng.normal(1, 0.1, (nz, ny, nx)).astype(np.float32)
    flux[0, 0, 0] = np.nan
    var = np.full_like(flux, 0.01)
    dq = np.zeros((nz, ny, nx), dtype=np.uint8)
    dq[1, 1, 1] = 1

    # MUSE-style MEF: empty primary, DATA, STAT, DQ.
    prim = fits.PrimaryHDU()
    prim.header["OBJECT"] = "FUZZ"
    prim.header["INSTRUME"] = "MUSE"
    prim.header["RADESYS"] = "FK5"
    hdus = [prim]
    for name, arr in (("DATA", flux), ("STAT", var), ("DQ", dq)):
        h = fits.ImageHDU(arr, name=name)
        celestial(h.header, nx, ny, frame=False)
        spectral(h.header)
        if name == "DATA":
            h.header["BUNIT"] = "10**(-20)*erg/s/cm**2/Angstrom"
        hdus.append(h)
    fits.HDUList(hdus).writeto(out("fits_cube", "muse_mef.fits"), overwrite=True)

    # Single-HDU cube, vacuum log axis in nm, PC/CDELT celestial WCS, BSCALE/BZERO int16 data.
    h = fits.PrimaryHDU((np.nan_to_num(flux) * 100).astype(np.int16))
    celestial(h.header, nx, ny, cd=False)
    spectral(h.header, ctype="WAVE-LOG", crval=475.0, step=0.125, unit="nm", cd=False)
    h.header["BUNIT"] = "1e-20 erg/s/cm2/A"
    h.header["BSCALE"] = 0.01
    h.header["BZERO"] = 0.0
    h.header["BLANK"] = -32768
    h.writeto(out("fits_cube", "primary_log_nm.fits"), overwrite=True)

    # STAT of the wrong shape and no DQ; 2-D primary.
    prim = fits.PrimaryHDU(np.zeros((2, 2), dtype=np.float32))
    d = fits.ImageHDU(flux, name="DATA")
    spectral(d.header)
    s = fits.ImageHDU(var[:, :, :2], name="STAT")
    fits.HDUList([prim, d, s]).writeto(out("fits_cube", "stat_mismatch.fits"), overwrite=True)


def image_seeds():
    rng = np.random.default_rng(2)
    img = rng.normal(0, 1, (4, 3))
    # HST-style: empty primary with the frame, SCI (float32, SIP distortion) + ERR + a table.
    prim = fits.PrimaryHDU()
    prim.header["RADESYS"] = "ICRS"
    prim.header["EQUINOX"] = 2000.0
    prim.header["EXPTIME"] = 1200.0
    sci = fits.ImageHDU(img.astype(np.float32), name="SCI")
    celestial(sci.header, 3, 4, frame=False)
    sci.header["CTYPE1"] = "RA---TAN-SIP"
    sci.header["CTYPE2"] = "DEC--TAN-SIP"
    sci.header["A_ORDER"] = 2
    sci.header["B_ORDER"] = 2
    sci.header["A_0_2"] = 1e-6
    sci.header["B_2_0"] = -1e-6
    sci.header["BUNIT"] = "ELECTRONS/S"
    sci.header["PHOTFLAM"] = 1.5e-19
    err = fits.ImageHDU(np.abs(img).astype(np.float32), name="ERR")
    tab = fits.BinTableHDU.from_columns([fits.Column(name="X", format="D", array=np.arange(3.0))], name="TAB")
    fits.HDUList([prim, sci, err, tab]).writeto(out("fits_image", "hst_sci.fits"), overwrite=True)

    # A single 2-D primary image (int32 with BLANK), CROTA2 WCS; and a 3-D image of one plane.
    p = fits.PrimaryHDU(np.arange(12, dtype=np.int32).reshape(4, 3))
    p.header["BLANK"] = 5
    p.header["CTYPE1"] = "RA---SIN"
    p.header["CTYPE2"] = "DEC--SIN"
    p.header["CRVAL1"] = 10.0
    p.header["CRVAL2"] = 20.0
    p.header["CDELT1"] = -0.001
    p.header["CDELT2"] = 0.001
    p.header["CROTA2"] = 30.0
    p.header["RADECSYS"] = "FK4"
    p.header["EPOCH"] = 1950.0
    p.header["OBJECT"] = "FUZZ"
    p.writeto(out("fits_image", "primary_int.fits"), overwrite=True)
    fits.PrimaryHDU(np.ones((1, 4, 3), dtype=np.float64)).writeto(out("fits_image", "plane3d.fits"), overwrite=True)


def maps_seeds():
    ny, nx = 3, 4
    prim = fits.PrimaryHDU()
    for k, v in (("CFVERS", "0.1.0"), ("OBJECT", "FUZZ"), ("PIPEFILE", "quicklook.yaml"), ("NBINS", 2),
                 ("PARTIAL", False)):
        prim.header[k] = v
    flux = fits.ImageHDU(np.ones((ny, nx)), name="FLUX")
    flux.header["BUNIT"] = "1e-20 erg/s/cm2/A"
    flux.header["HDUCLAS2"] = "DATA"
    flux.header["ERRDATA"] = "FLUX_IVAR"
    flux.header["QUALDATA"] = "FLUX_MASK"
    celestial(flux.header, nx, ny)
    ivar = fits.ImageHDU(np.full((ny, nx), 4.0), name="FLUX_IVAR")
    ivar.header["HDUCLAS2"] = "ERROR"
    ivar.header["DATA"] = "FLUX"
    mask = fits.ImageHDU(np.zeros((ny, nx), dtype=np.int32), name="FLUX_MASK")
    mask.header["HDUCLAS2"] = "QUALITY"
    ages = fits.ImageHDU(np.zeros((2, ny, nx)), name="AGE_FRAC")
    ages.header["C1"] = "young"
    ages.header["C2"] = "old"
    binid = fits.ImageHDU(np.array([[0, 0, 1, 1]] * ny, dtype=np.int32), name="BINID")
    binid.header["HDUCLAS2"] = "INDEX"
    bins = fits.BinTableHDU.from_columns([
        fits.Column(name="BINID", format="K", array=np.array([0, 1])),
        fits.Column(name="SNR", format="D", unit="", array=np.array([12.5, np.nan])),
        fits.Column(name="MASS_FRAC", format="3E", array=np.ones((2, 3), dtype=np.float32)),
        fits.Column(name="NAME", format="4A", array=np.array(["a", "b"])),
    ], name="BINS")
    hdus = fits.HDUList([prim, flux, ivar, mask, ages, binid, bins])
    for h in hdus:
        h.add_checksum()
    hdus.writeto(out("fits_maps", "maps.fits"), overwrite=True)


def wcs_seeds():
    def cards(d):
        return "".join(fits.Card(k, v).image for k, v in d)

    base = [("NAXIS", 2), ("NAXIS1", 300), ("NAXIS2", 300), ("WCSAXES", 2), ("CTYPE1", "RA---TAN"),
            ("CTYPE2", "DEC--TAN"), ("CRVAL1", 53.16), ("CRVAL2", -27.78), ("CRPIX1", 150.0), ("CRPIX2", 150.0)]
    sets = {
        "cd.cards": base + [("CD1_1", -5.55e-5), ("CD1_2", 0.0), ("CD2_1", 0.0), ("CD2_2", 5.55e-5),
                            ("CUNIT1", "deg"), ("CUNIT2", "deg"), ("RADESYS", "FK5"), ("EQUINOX", 2000.0)],
        "pc.cards": base + [("CDELT1", -0.2 / 3600), ("CDELT2", 0.2 / 3600), ("PC1_1", 0.98), ("PC1_2", -0.17),
                            ("PC2_1", 0.17), ("PC2_2", 0.98), ("LONPOLE", 180.0), ("LATPOLE", -27.78)],
        "crota.cards": base + [("CDELT1", -1e-4), ("CDELT2", 1e-4), ("CROTA2", 12.5), ("RADECSYS", "FK4"),
                               ("EPOCH", 1950.0)],
        "sip.cards": [c if c[0] != "CTYPE1" else ("CTYPE1", "RA---TAN-SIP") for c in base]
        + [("CTYPE2", "DEC--TAN-SIP"), ("CD1_1", -1e-5), ("CD2_2", 1e-5), ("A_ORDER", 2), ("A_0_2", 2e-6),
           ("A_1_1", -1e-6), ("B_ORDER", 2), ("B_2_0", 3e-7), ("AP_ORDER", 1), ("BP_ORDER", 1)],
        "zpn.cards": [("NAXIS", 2), ("CTYPE1", "RA---ZPN"), ("CTYPE2", "DEC--ZPN"), ("CRVAL1", 10.0),
                      ("CRVAL2", 80.0), ("CDELT1", -0.01), ("CDELT2", 0.01), ("PV2_1", 1.0), ("PV2_3", 0.3)],
        "galactic.cards": [("NAXIS", 2), ("CTYPE1", "GLON-CAR"), ("CTYPE2", "GLAT-CAR"), ("CRVAL1", 0.0),
                           ("CRVAL2", 0.0), ("CDELT1", -0.5), ("CDELT2", 0.5), ("CUNIT1", "arcsec")],
        "linear.cards": [("NAXIS", 2), ("CTYPE1", "X"), ("CTYPE2", "Y"), ("CDELT1", 1.0), ("CDELT2", 1.0)],
    }
    for name, d in sets.items():
        with open(out("wcs", name), "w") as f:
            f.write(cards(d))


if __name__ == "__main__":
    cube_seeds()
    image_seeds()
    maps_seeds()
    wcs_seeds()
