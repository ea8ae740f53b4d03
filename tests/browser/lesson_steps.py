"""What a learner does in each lesson, as data: notebook -> the steps to click through.

Every notebook in ``notebooks/`` must have a row in :data:`LESSON_STEPS` (a test checks it).
The browser test opens the notebook, runs all cells, checks that nothing failed and that
every widget rendered, then performs the row's steps in order, checks again and saves a
screenshot ``artifacts/<notebook stem>.png``.

To add a lesson, list its interactions, for instance::

    "08_example.ipynb": (
        Click("step CPU1", changes=("labels", "images")),
        Choose("v6.14", changes=("labels",)),
        Check("PT_RECLAIM", changes=("labels", "images")),
        Type("KiB:", "16", changes=()),
        Play(steps=5),
        Screenshot("08_example_stepper", near="load witness", readme="stepper"),
    ),

Each action waits until the page has settled (kernel idle, widgets no longer changing), so
the next step compares against the final state. Steps assert that the page *changed* (the
text panel, the picture), not what the model computed: outcomes are tested against the
model in ``tests/``; :class:`ExpectLabel` is for fixed interface text only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from labdriver import (
    NOTEBOOK,
    OUTPUT,
    LabError,
    click_button,
    image_sources,
    label_text,
    label_texts,
    making_readme_pictures,
    notebook_name,
    poll,
    readme_picture,
    screenshot,
    settle,
)
from playwright.sync_api import Page

Part = Literal["labels", "images"]
CHANGE_TIMEOUT_S = 20.0


class Step(Protocol):
    """One learner action (or check) in a lesson."""

    def run(self, page: Page) -> None: ...


def _snapshot(page: Page, parts: tuple[Part, ...]) -> dict[Part, list[str]]:
    readers: dict[Part, Callable[[Page], list[str]]] = {
        "labels": label_texts,
        "images": image_sources,
    }
    return {part: readers[part](page) for part in parts}


def _act_and_expect_changes(
    page: Page, what: str, act: Callable[[], None], parts: tuple[Part, ...], wait: bool = True
) -> None:
    """Do ``act``; poll until every part in ``parts`` differs from before; then (``wait``)
    let the page settle."""
    before = _snapshot(page, parts)
    act()
    if not parts:
        if wait:
            settle(page)
        return

    def all_changed() -> bool:
        now = _snapshot(page, parts)
        return all(now[part] != before[part] for part in parts)

    def message() -> str:
        now = _snapshot(page, parts)
        same = [part for part in parts if now[part] == before[part]]
        shown = label_texts(page)
        return (
            f"{notebook_name(page)}: after {what}, these did not change within "
            f"{CHANGE_TIMEOUT_S:.0f} s: {same}; labels now: {shown}"
        )

    poll(all_changed, CHANGE_TIMEOUT_S, message)
    if wait:
        settle(page)


@dataclass(frozen=True)
class Click:
    """Click the widget button captioned ``button``; ``changes`` must then change."""

    button: str
    changes: tuple[Part, ...] = ("labels", "images")

    def run(self, page: Page) -> None:
        _act_and_expect_changes(
            page, f"clicking {self.button!r}", lambda: click_button(page, self.button), self.changes
        )


@dataclass(frozen=True)
class Choose:
    """Pick ``option`` in a ToggleButtons, RadioButtons or Dropdown widget."""

    option: str
    changes: tuple[Part, ...] = ("labels", "images")

    def run(self, page: Page) -> None:
        _act_and_expect_changes(
            page,
            f"choosing {self.option!r}",
            lambda: _choose_option(page, self.option),
            self.changes,
        )


def _choose_option(page: Page, option: str) -> None:
    # ipywidgets writes spaces in option captions as no-break spaces; JavaScript's \s
    # matches both.
    exact = re.compile(r"^\s*" + r"\s+".join(re.escape(w) for w in option.split()) + r"\s*$")
    outputs = page.locator(OUTPUT)
    toggle = outputs.locator("button.widget-toggle-button").filter(has_text=exact)
    if toggle.count():
        toggle.first.click()
        return
    radio = outputs.locator(".widget-radio-box label").filter(has_text=exact)
    if radio.count():
        radio.first.click()
        return
    for select in outputs.locator(".widget-dropdown select").all():
        choice = select.locator("option").filter(has_text=exact)
        if choice.count():
            select.select_option(label=choice.first.text_content() or option)
            return
    raise LabError(f"{notebook_name(page)}: no toggle, radio or dropdown offers {option!r}")


@dataclass(frozen=True)
class Check:
    """Flip the Checkbox whose description is ``description``."""

    description: str
    changes: tuple[Part, ...] = ("labels", "images")

    def run(self, page: Page) -> None:
        box = (
            page.locator(f"{OUTPUT} .widget-checkbox")
            .filter(has_text=self.description)
            .locator("input[type='checkbox']")
        )

        def flip() -> None:
            if not box.count():
                raise LabError(f"{notebook_name(page)}: no checkbox {self.description!r}")
            box.first.click()

        _act_and_expect_changes(page, f"ticking {self.description!r}", flip, self.changes)


@dataclass(frozen=True)
class Type:
    """Type ``text`` into the Text/IntText/FloatText widget described as ``description``.

    Enter is pressed afterwards, so widgets that sync on submit see the value too.
    """

    description: str
    text: str
    changes: tuple[Part, ...] = ()

    def run(self, page: Page) -> None:
        field = (
            page.locator(f"{OUTPUT} .widget-inline-hbox")
            .filter(has=page.locator("label.widget-label", has_text=self.description))
            .locator("input")
        )

        def type_text() -> None:
            if not field.count():
                raise LabError(f"{notebook_name(page)}: no text field {self.description!r}")
            field.first.fill(self.text)
            field.first.press("Enter")

        _act_and_expect_changes(page, f"typing into {self.description!r}", type_text, self.changes)


@dataclass(frozen=True)
class Play:
    """Press the play button of the (first) Play control; ``changes`` must then change.

    With ``to_end`` wait until the control pauses by itself (the stepper pauses at the end
    of its plan); otherwise press pause once the page changed ``steps`` times.
    ``to_end_for_readme`` plays to the end only while README pictures are made
    (``make screenshots``), so that the routine run stays short.
    """

    to_end: bool = False
    to_end_for_readme: bool = False
    steps: int = 3
    changes: tuple[Part, ...] = ("labels", "images")
    timeout: float = 30.0

    def run(self, page: Page) -> None:
        button = page.locator(f"{OUTPUT} .widget-play button").first
        playing = button.locator("i.fa-pause")

        def press() -> None:
            if not page.locator(f"{OUTPUT} .widget-play").count():
                raise LabError(f"{notebook_name(page)}: no Play control in the outputs")
            button.click()

        # No settling here: while it plays the page changes every interval.
        _act_and_expect_changes(page, "pressing play", press, self.changes, wait=False)
        if self.to_end or (self.to_end_for_readme and making_readme_pictures()):
            poll(
                lambda: playing.count() == 0,
                self.timeout,
                lambda: f"{notebook_name(page)}: play still running after {self.timeout:.0f} s",
            )
        else:
            seen = [_snapshot(page, self.changes)]

            def stepped_enough() -> bool:
                now = _snapshot(page, self.changes)
                if now != seen[-1]:
                    seen.append(now)
                return len(seen) > self.steps or playing.count() == 0

            poll(
                stepped_enough,
                self.timeout,
                lambda: (
                    f"{notebook_name(page)}: play changed the page only {len(seen) - 1} "
                    f"time(s) in {self.timeout:.0f} s"
                ),
            )
            if playing.count():
                button.click()  # pause
        settle(page)


@dataclass(frozen=True)
class ExpectLabel:
    """Some Label/HTML widget shows ``text`` (fixed interface text, not a model outcome)."""

    text: str

    def run(self, page: Page) -> None:
        poll(
            lambda: any(self.text in t for t in label_texts(page)),
            CHANGE_TIMEOUT_S,
            lambda: (
                f"{notebook_name(page)}: no label shows {self.text!r}; labels: {label_texts(page)}"
            ),
        )
        label_text(page, contains=self.text)


@dataclass(frozen=True)
class ExpectImage:
    """At least ``count`` figure images are shown in the outputs."""

    count: int = 1

    def run(self, page: Page) -> None:
        poll(
            lambda: len(image_sources(page)) >= self.count,
            CHANGE_TIMEOUT_S,
            lambda: (
                f"{notebook_name(page)}: expected at least {self.count} figure image(s) "
                f"in the outputs, found {len(image_sources(page))}"
            ),
        )


@dataclass(frozen=True)
class Screenshot:
    """Save ``artifacts/<name>.png`` here, first scrolling ``near`` into view.

    ``near`` is looked for as a widget's or output's exact text, then as part of one, then
    anywhere in the notebook, and scrolled to the top of the window. With ``readme`` also
    save the README picture ``artifacts/readme/<readme>.png`` (copied to ``docs/img/`` by
    ``make screenshots``): the whole output that shows ``near`` when ``readme_part`` is
    ``"output"``, else the browser window.
    """

    name: str
    near: str | None = None
    readme: str | None = None
    readme_part: Literal["output", "window"] = "window"

    def run(self, page: Page) -> None:
        output = None
        if self.near is not None:
            for scope, exact in ((OUTPUT, True), (OUTPUT, False), (NOTEBOOK, False)):
                found = page.locator(scope).get_by_text(self.near, exact=exact)
                target = found.filter(visible=True)
                if target.count():
                    # Put it at the top of the window: what follows it is in the picture.
                    target.first.evaluate("(node) => node.scrollIntoView({block: 'start'})")
                    page.wait_for_timeout(200)
                    if scope == OUTPUT:
                        text = page.get_by_text(self.near, exact=exact)
                        output = page.locator(OUTPUT).filter(has=text).first
                    break
            else:
                raise LabError(f"{notebook_name(page)}: nothing shows {self.near!r} to scroll to")
        screenshot(page, self.name)
        if self.readme is not None:
            if self.readme_part == "output" and output is None:
                raise LabError(f"{notebook_name(page)}: no output shows {self.near!r}")
            readme_picture(page, self.readme, output if self.readme_part == "output" else None)


# Lessons 02, 04 and 06 show figures but no widgets: a learner runs them and reads. The
# test checks for them what it checks everywhere (no error, every figure shown, see
# test_browser_lessons.py) and saves the screenshot; their rows list no steps.
LESSON_STEPS: dict[str, tuple[Step, ...]] = {
    # The stepper on v6.13 with the batch page failing (the pre-patch single-table free).
    "00_start_here.ipynb": (
        Click("step CPU0"),
        Click("step CPU1"),
        Click("step back"),
        Choose("tables", changes=("images",)),
        Choose("timeline", changes=("images",)),
        # A config toggle rebuilds the machine at step 0 under the new label.
        Choose("batch page ok"),
        # Exploring changes the text panel (plan, explorer table); the machine is rebuilt
        # at step 0 as it already was, so the picture may stay the same.
        Click("load witness", changes=("labels",)),
        Play(steps=3),
        Screenshot("00_start_here_stepper", near="load witness"),
    ),
    # TouchLab as its Markdown suggests: touch a page, move 2 MiB up, touch a whole PTE
    # table's worth of pages, zap them (PT_RECLAIM ticked); then the walk and the quiz.
    "01_page_tables.ipynb": (
        Click("touch"),
        Click("+2 MiB", changes=()),  # moves the address field; the next touch shows it
        Type("pages", "512"),
        Click("touch"),
        Click("zap (MADV_DONTNEED)"),
        Choose("5-level (LA57)"),
        Choose("after call_rcu()", changes=("images",)),
        Type("KiB:", "16"),
        Click("check", changes=("labels",)),
        Screenshot("01_page_tables_touchlab", near="Now do it yourself", readme="lesson01"),
    ),
    "02_ptdesc.ipynb": (),
    # The stepper on GUP-fast (interrupts off) vs PT reclaim, v6.13.
    "03_readers.ipynb": (
        Click("step CPU0"),
        Click("step CPU0"),
        Click("step CPU1"),
        Choose("pending memory", changes=("images",)),
        Choose("v6.14"),
        Choose("batch page fails"),
        Play(steps=4),
        Choose("timeline", changes=("images",)),
        Screenshot("03_readers_stepper", near="load witness"),
    ),
    "04_freeing_paths.ipynb": (),
    # The stepper with the explorer's v6.13 witness loaded: play it to its end (the
    # use-after-free), then the same scenario on v6.14.
    "05_the_race.ipynb": (
        Play(steps=5, to_end_for_readme=True),  # the whole witness takes 35 x 0.4 s
        Screenshot(
            "05_the_race_witness", near="load witness", readme="stepper", readme_part="output"
        ),
        Choose("v6.14"),
        Click("load witness", changes=("labels",)),
        Click("step CPU0"),
        Click("step CPU1"),
        Screenshot("05_the_race_v6_14", near="load witness"),
    ),
    "06_explore.ipynb": (),
    "07_real_kernel.ipynb": (
        Choose("MADV_FREE", changes=()),
        Click("Run", changes=("labels", "images")),
        Screenshot("07_real_kernel_lab", near="MADV_FREE"),
    ),
}
