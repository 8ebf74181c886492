"""``example-agreement``: two weak supervisors label train2; the strong model learns only the rows they agree on.

The weak model (trained on train1, as in the reference) and a partner (by default the same weak model trained on
the other half of train1 only, so the two make different mistakes) both label train2; the ``example-agree`` op
keeps the rows on which their hard labels agree, and the strong model is trained on those, with each loss.
"""

from __future__ import annotations

from w2s_harness import ConfigError, StageKind, Subset

PARTNER_ON = ("half", "all")


class Agreement:
    """Rows ``example-agreement/<loss>`` beside ``naive/<loss>``, each compared per seed with its naive row.

    :param partner: the second supervisor: ``"weak"`` (default), ``"strong"``, a model name or a table.
    :param partner_on: ``half`` (default: the second half of train1) or ``all`` (all of train1).
    :param soft: the kept rows' soft labels (the ``example-agree`` op's ``soft``): ``first`` (the weak model's)
        or ``mean``.
    """

    name = "example-agreement"

    def __init__(self, partner="weak", partner_on: str = "half", soft: str = "first"):
        if partner_on not in PARTNER_ON:
            raise ConfigError(f"strategy {self.name!r}: partner_on={partner_on!r}; use one of {', '.join(PARTNER_ON)}")
        self.partner, self.partner_on, self.soft = partner, partner_on, soft

    def plan(self, b) -> None:
        ref, naive = b.naive_rows()  # weak, its labels of train2, the ceiling + the naive/<loss> rows
        on = Subset("train1", 1, 2) if self.partner_on == "half" else "train1"
        partner = b.train(b.model_ref(self.partner, "strategy.partner"), on=on, kind=StageKind.TRAIN_SUPERVISOR,
                          name=f"partner[{self.partner_on}]")
        partner_labels = b.label(partner, on="train2", name="partner labels")
        agreed = b.op("example-agree", inputs=[ref.labels, partner_labels], params={"soft": self.soft},
                      name=f"agreement[{self.soft}]")
        b.transfers(self.name, ref, agreed, baseline=naive)  # one row per loss, each compared with naive
