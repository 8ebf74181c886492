"""``lichess_puzzles``: chess puzzles as choice tasks (pick the best move among legal candidates).

Two raw schemas are read (the columns decide which):

* the **Lichess puzzle database** (``lichess_db_puzzle.csv``: ``PuzzleId, FEN, Moves, Rating, ...``): ``FEN`` is
  the position *before* the opponent's move, ``Moves`` the UCI moves from there, the first one the opponent's. The
  puzzle position is ``FEN`` after that first move, and the correct answer is the second move;
* **EleutherAI/lichess-puzzles** (the hub default; ``ctx``: the game so far as PGN movetext, ``target``: the next
  move in SAN): the position is the game replayed from the start.

The prompt gives the position as a FEN and the moves so far (the opponent's last move, or the whole game) as
text; the candidates are the correct move and ``n_candidates - 1`` other legal moves drawn without replacement by
a generator seeded with ``(shuffle_seed, row id)``, written in ``notation`` (SAN or UCI). A row whose moves do
not parse or whose position has fewer than ``n_candidates`` legal moves is skipped. The puzzle rating (``Rating``,
or ``difficulty_column``) is the example's difficulty. Legality comes from python-chess (``pip install
'w2s-harness[chess]'``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from w2s_harness import Choice, ConfigError, DataError

from .choice_hub import HubChoiceDataset, Row

INSTALL_HINT = "pip install 'w2s-harness[chess]' (or: pip install 'chess>=1.10')"
NOTATIONS = ("san", "uci")
#: Salt of the draw of the alternative moves (independent of the candidate shuffle).
_ALT_SALT = 0x636865
_MOVE_NUMBER = re.compile(r"^\d+\.+$|^\d+\.+(?=\S)")
_RESULTS = {"1-0", "0-1", "1/2-1/2", "*"}


def _chess():
    try:
        import chess
    except ImportError:
        raise ConfigError(f"dataset 'lichess_puzzles' needs python-chess: {INSTALL_HINT}") from None
    return chess


def replay_pgn(movetext: str):
    """``(board, [SAN moves])`` after the moves of PGN movetext (move numbers, results and comments ignored);
    ``None`` if a move is not legal."""
    chess = _chess()
    board = chess.Board()
    text = re.sub(r"\{[^}]*\}|\([^)]*\)|\$\d+", " ", movetext or "")
    played = []
    for token in text.split():
        token = _MOVE_NUMBER.sub("", token)
        if not token or token in _RESULTS:
            continue
        try:
            move = board.parse_san(token)
        except ValueError:
            return None
        played.append(board.san(move))
        board.push(move)
    return board, played


def move_text(board, move, notation: str) -> str:
    return board.san(move) if notation == "san" else move.uci()


class LichessPuzzles(HubChoiceDataset):
    """Chess puzzles: the position and the moves so far as the prompt, the correct move and sampled legal
    alternatives as the candidates.

    :param n_candidates: candidates per puzzle (the correct move + ``n_candidates - 1`` legal alternatives).
    :param notation: ``"san"`` (``Nxe5``) or ``"uci"`` (``f3e5``) for the candidate moves.
    :param difficulty_column: raw column of the difficulty (default ``Rating``, else ``rating`` when the source
        has one); the puzzle rating becomes the example's ``difficulty``.
    :param data_files: local files in either raw schema, e.g. ``{train = "lichess_db_puzzle.csv"}`` (the test rows
        are then drawn from them).
    :param path/hub_id/revision/cache_dir/pair_template/shuffle_seed/n_train/n_test/test_seed: as every hub
        dataset (the default hub id is ``EleutherAI/lichess-puzzles``, one ``train`` split).
    """

    name = "lichess_puzzles"
    hub = "EleutherAI/lichess-puzzles"
    test_split = None
    columns = ("FEN", "Moves", "Rating")
    default_pair_template = "{prompt} {candidate}"

    def __init__(self, n_candidates: int = 4, notation: str = "san", difficulty_column: str | None = None,
                 data_files: Any = None, path: str | None = None, hub_id: str | None = None,
                 revision: str | None = None, cache_dir: str | None = None, pair_template: str | None = None,
                 shuffle_seed: int = 0, n_train: int | None = None, n_test: int | None = None, test_seed: int = 0):
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)) or n_candidates < 2:
            raise ConfigError(f"dataset {self.name!r}: n_candidates must be an integer >= 2, got {n_candidates!r}")
        if notation not in NOTATIONS:
            raise ConfigError(f"dataset {self.name!r}: notation must be one of {', '.join(NOTATIONS)}, "
                              f"got {notation!r}")
        if difficulty_column is not None and (not isinstance(difficulty_column, str) or not difficulty_column):
            raise ConfigError(f"dataset {self.name!r}: difficulty_column must be a column name, "
                              f"got {difficulty_column!r}")
        self.n_candidates = int(n_candidates)
        self.notation = notation
        self.difficulty_column = difficulty_column
        super().__init__(data_files=data_files, path=path, hub_id=hub_id, revision=revision, cache_dir=cache_dir,
                         pair_template=pair_template, shuffle_seed=shuffle_seed, n_train=n_train, n_test=n_test,
                         test_seed=test_seed)
        _chess()  # fail at config time, not after the data loaded

    def choice_params(self) -> dict[str, Any]:
        return {**self.source_params(), "n_candidates": self.n_candidates, "notation": self.notation,
                "difficulty_column": self.difficulty_column, "chess": "v1"}

    # ------------------------------------------------------------------------------------ schema

    def _schema(self, have: list[str]) -> str:
        if "FEN" in have and "Moves" in have:
            return "lichess"
        if "ctx" in have and "target" in have:
            return "pgn"
        return "unknown"

    def _difficulty(self, have: list[str]) -> str | None:
        if self.difficulty_column is not None:
            return self.difficulty_column
        return next((c for c in ("Rating", "rating") if c in have), None)

    def _raw_columns(self, have: list[str]) -> list[str]:
        cols = ["ctx", "target"] if self._schema(have) == "pgn" else ["FEN", "Moves"]
        diff = self._difficulty(have)
        return cols + ([diff] if diff is not None else [])

    def _check_columns(self, split: str, have: list[str]) -> None:
        if self._schema(have) == "unknown":
            raise DataError(f"dataset {self.name!r}: split {split!r} has columns {', '.join(have)}; it needs the "
                            f"Lichess puzzle schema (FEN, Moves, Rating) or EleutherAI/lichess-puzzles' (ctx, "
                            f"target)")
        diff = self.difficulty_column
        if diff is not None and diff not in have:
            raise DataError(f"dataset {self.name!r}: split {split!r} has no difficulty column {diff!r} (it has "
                            f"{', '.join(have)})")

    # ------------------------------------------------------------------------------------ rows

    def to_choice(self, row: Row, row_id: int) -> Choice | None:
        chess = _chess()
        if "FEN" in row:
            try:
                board = chess.Board(row["FEN"])
                moves = [chess.Move.from_uci(m) for m in str(row["Moves"] or "").split()]
            except (ValueError, TypeError):
                return None
            if len(moves) < 2 or moves[0] not in board.legal_moves:
                return None
            last = board.san(moves[0])
            board.push(moves[0])
            history = f"Last move: {last}"
            correct = moves[1]
        else:
            replayed = replay_pgn(row["ctx"])
            if replayed is None:
                return None
            board, played = replayed
            try:
                correct = board.parse_san(str(row["target"] or "").strip())
            except ValueError:
                return None
            history = "Moves so far: " + (" ".join(played) if played else "(none)")
        if correct not in board.legal_moves:
            return None
        others = sorted((m for m in board.legal_moves if m != correct), key=lambda m: m.uci())
        if len(others) < self.n_candidates - 1:
            return None
        rng = np.random.default_rng(np.random.SeedSequence([self.shuffle_seed, row_id, _ALT_SALT]))
        picked = [others[i] for i in sorted(rng.choice(len(others), self.n_candidates - 1, replace=False))]
        side = "White" if board.turn == chess.WHITE else "Black"
        prompt = f"Chess position (FEN): {board.fen()}\n{history}\n{side} to move. Best move:"
        cands = tuple(move_text(board, m, self.notation) for m in [correct, *picked])
        diff = self._difficulty(list(row))
        value = row.get(diff) if diff is not None else None
        try:
            difficulty = None if value is None else float(value)
        except (TypeError, ValueError):
            difficulty = None
        return Choice(prompt, cands, 0, difficulty)
