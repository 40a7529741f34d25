"""The demo's progress bar: no estimate from the warm start's wall time, no `nan`, an ETA once steps are timed."""

from __future__ import annotations

import io
import math
import time

from verl_maxpo.tools.demo.main import DemoBar


def lines(stream: io.StringIO) -> list[str]:
    return [line.strip() for line in stream.getvalue().replace("\r", "\n").splitlines() if line.strip()]


def test_bar_shows_no_eta_during_the_warm_start_and_until_steps_are_timed() -> None:
    out = io.StringIO()
    with DemoBar(total=1606, workers=2, file=out) as bar:
        bar.bar.mininterval = 0  # draw every change
        bar.warm_step(1, math.nan)  # pass@1 not measured yet
        bar.warm_step(25, 0.04)
        warm = lines(out)
        time.sleep(0.05)
        bar.start_steps()
        for i in range(5):
            bar.step(1, f"maxpo_seed0 step {i + 1}")
            if i == 3:
                untimed = lines(out)[len(warm) :]
        timed = lines(out)[-1]
    assert all("nan" not in line and "<" not in line and "/1606" not in line for line in warm), warm
    assert "warm start step 1" in warm[-2] and "pass@1 on training prompts 0.04" in warm[-1]
    assert untimed and all("ETA once timed" in line and "<" not in line for line in untimed), untimed
    assert "5/1606" in timed and "<" in timed and "ETA once timed" not in timed, timed  # 2 * 2 + 1 steps timed
