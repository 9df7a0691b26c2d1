"""The cross-domain study's pure parts: readings whatever the sign, table rows, the seed's table, units."""

import math

import pytest

from ldct_scripts.studies.domain_adaptation import METHODS, REAL_METHODS, analysis


def _cell(direction, method, metric, mean):
    return {"direction": direction, "method": method, "metric": metric, "mean": mean, "std": 0.1, "n_images": 2}


def test_reading_compares_adaptive_with_plain_cpce_whatever_the_sign():
    rows = []
    for metric, (x, b, a) in {"psnr_full": (30.0, 33.0, 32.5), "psnr_window": (20.0, 21.0, 22.25)}.items():
        rows += [_cell("S→R", "LDCT", metric, x), _cell("S→R", METHODS["baseline"][0], metric, b),
                 _cell("S→R", METHODS["adaptive"][0], metric, a)]
    full, window = analysis.reading(rows, ["S→R", "R→S"], ["baseline", "adaptive"])  # R→S has no cells: no line
    assert full == ("- S→R, psnr full: CPCE + adaptive RFM alignment 32.50 dB is lower than plain CPCE 33.00 dB "
                    "(-0.50 dB; input 30.00 dB).")
    assert "is higher than plain CPCE 21.00 dB (+1.25 dB" in window
    assert analysis.reading(rows, ["S→R"], ["adaptive"]) == []  # nothing to compare without the baseline


def test_summarize_and_select_rows():
    rows = analysis.summarize([{"psnr_full": 30.0, "ssim_full": 0.5}, {"psnr_full": 32.0, "ssim_full": 0.7}], "R→S", "U-Net (extra)")
    assert [r["metric"] for r in rows] == ["psnr_full", "ssim_full"]
    assert rows[0]["mean"] == 31.0 and rows[0]["std"] == pytest.approx(math.sqrt(2.0)) and rows[0]["n_images"] == 2
    assert analysis.summarize([{"psnr_full": 30.0}], "S→R", "x")[0]["std"] == 0.0  # one image: no spread
    kept = analysis.select_rows(rows + [_cell("S→R", "U-Net (extra)", "psnr_full", 1.0)], ["R→S"], ["U-Net (extra)"])
    assert kept == rows


def test_seed_table_holds_the_printed_cells():
    table = analysis.seed_table()
    assert "| S→R | 34.21±0.81 | 38.58±0.73 | 42.27±0.63 |" in table and "| R→S | 0.93±0.79 | 0.94±0.78 | 0.98±0.53 |" in table


def test_units_and_roi():
    from ldct_sim import mu_water

    mu_w = mu_water()
    assert analysis.to_hu([0.0, mu_w, 2 * mu_w], mu_w).tolist() == [-1000.0, 0.0, 1000.0]
    assert analysis.roi_box(48) == (18, 21, 12) and analysis.roi_box(16) == (4, 5, 8)  # at least 8 pixels
    assert analysis.rmse_hu([[0.0, 3.0]], [[4.0, 3.0]]) == pytest.approx(math.sqrt(8.0))


def _row(kernel, method, rmse, psnr, cut=""):
    return {"kernel": kernel, "n_pairs": "2", "method": method, "rmse_body_mean": str(rmse), "rmse_body_sd": "1.0",
            "psnr_body_mean": str(psnr), "psnr_body_sd": "0.5", "ssim_body_mean": "0.9", "ssim_body_sd": "",
            "rmse_body_cut_pct": cut}


def test_real_reading_and_table():
    rows = [_row("B30f", "low-dose input", 30.0, 40.0), _row("B30f", REAL_METHODS["baseline"][0], 20.0, 43.0, "33.3"),
            _row("B30f", REAL_METHODS["adaptive"][0], 21.0, 42.5, "30.0")]
    (line,) = analysis.real_reading(rows)
    assert "B30f" in line and "-0.50 dB" in line and "+1.0 HU" in line and "+3.7 dB" in line
    table = analysis.real_table(rows)
    assert table.splitlines()[2].startswith("| B30f | 2 | low-dose input | 30.0 ± 1.0 |  |")  # input first, no cut
    assert "| 21.0 ± 1.0 | +30 % | 42.50 ± 0.50 | 0.9000 |" in table


def test_real_rows_name_each_method_and_keep_the_input_once():
    bench = lambda bundle: [_row("B30f", "low-dose input", 30.0, 40.0), _row("B30f", bundle, 20.0, 43.0)]  # noqa: E731
    rows = analysis.real_rows({"shipped": bench("cpce_rfm_da"), "unet": bench("unet_ldct")}, ["shipped", "unet"])
    assert [r["method"] for r in rows] == ["low-dose input", REAL_METHODS["shipped"][0], REAL_METHODS["unet"][0]]


def test_mask_lines_say_whether_the_mask_adapts():
    entry = lambda adaptive: {"source": {"mean": [0.5, 0.7]}, "target": {"mean": [0.4]}, "max_domain_gap": 0.03,  # noqa: E731
                              "max_sd_over_images": 0.001, "adaptive_mask": adaptive}
    before, after = analysis.mask_lines({"before": entry(False), "after": entry(True)})
    assert before.startswith("- before adaptation: mean keep-probability source 0.600, target 0.400;")
    assert before.endswith("not adaptive (the same mask for every image).") and after.endswith(": adaptive.")
