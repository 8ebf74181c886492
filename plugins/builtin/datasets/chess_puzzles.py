"""Chess puzzles in two forms: ``lichess_puzzles``, this project's n-candidate choice task (pick the best move among
legal candidates), and ``lichess_puzzles_binary``, EleutherAI/w2s's binary form (its ``chess`` branch,
``w2s/ds_registry.py`` ``format_lichess``): one text showing the puzzle's move and one alternative, and an answer
that is right or wrong.

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

The binary form (:class:`LichessPuzzlesBinary`) writes EleutherAI/w2s's text::

    Find the best move. Previous moves:
    {ctx}

    1) {choice 1}
    2) {choice 2}
    A: {1 or 2}

where the choices are the puzzle's move and one alternative, shuffled, and the label says whether the answer shown
is the puzzle's move: per row a coin (label 1 with probability 1/2) then the shuffle of the two choices, both drawn
from one ``random.Random(format_seed)`` walked over the split in row order, as every named recipe draws its coins
(:mod:`.recipes`). The reference's alternative is the best move of a UCI engine (Stockfish, depth 3, two principal
variations) that is not the puzzle's move: set ``engine`` to the engine's executable for that; without an engine the
alternative is a legal move drawn at random (seeded by ``(format_seed, row id)``), which is easier to tell apart.
"""

from __future__ import annotations

import random
import re
import shutil
from typing import Any

import numpy as np

from w2s_harness import Choice, ConfigError, DataError, check_choice, check_int, check_path, check_str

from .choice_hub import READ_BLOCK, HubChoiceDataset, Row
from .hubtables import HubTables
from .recipes import ELEUTHER, Recipe, RecipeDataset

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


def schema(have: list[str]) -> str:
    """``"lichess"`` (FEN, Moves), ``"pgn"`` (ctx, target) or ``"unknown"``, from a split's columns."""
    if "FEN" in have and "Moves" in have:
        return "lichess"
    if "ctx" in have and "target" in have:
        return "pgn"
    return "unknown"


def puzzle(row: Row):
    """``(board, correct move, history)`` of one raw row in either schema: the puzzle position, the move to find and
    the moves so far (``None`` when the row's moves do not parse or the answer is not legal). ``history`` is
    ``("last", SAN of the opponent's move)`` for the Lichess schema, ``("moves", [SAN moves from the start])`` for
    the PGN schema."""
    chess = _chess()
    if "FEN" in row:
        try:
            board = chess.Board(row["FEN"])
            moves = [chess.Move.from_uci(m) for m in str(row["Moves"] or "").split()]
        except (ValueError, TypeError):
            return None
        if len(moves) < 2 or moves[0] not in board.legal_moves:
            return None
        history = ("last", board.san(moves[0]))
        board.push(moves[0])
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
        history = ("moves", played)
    if correct not in board.legal_moves:
        return None
    return board, correct, history


def _rating(row: Row, column: str | None) -> float | None:
    value = row.get(column) if column is not None else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _check_difficulty_column(owner: str, value: Any) -> str | None:
    return check_str(value, "difficulty_column", owner=f"dataset {owner!r}", optional=True, what="a column name")


def _check_schema(owner: str, split: str, have: list[str], difficulty_column: str | None) -> None:
    if schema(have) == "unknown":
        raise DataError(f"dataset {owner!r}: split {split!r} has columns {', '.join(have)}; it needs the "
                        f"Lichess puzzle schema (FEN, Moves, Rating) or EleutherAI/lichess-puzzles' (ctx, "
                        f"target)")
    if difficulty_column is not None and difficulty_column not in have:
        raise DataError(f"dataset {owner!r}: split {split!r} has no difficulty column {difficulty_column!r} (it "
                        f"has {', '.join(have)})")


def _default_difficulty(have: list[str], difficulty_column: str | None) -> str | None:
    if difficulty_column is not None:
        return difficulty_column
    return next((c for c in ("Rating", "rating") if c in have), None)


def _raw_columns(have: list[str], difficulty_column: str | None) -> list[str]:
    cols = ["ctx", "target"] if schema(have) == "pgn" else ["FEN", "Moves"]
    diff = _default_difficulty(have, difficulty_column)
    return cols + ([diff] if diff is not None else [])


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
        owner = f"dataset {self.name!r}"
        self.n_candidates = check_int(n_candidates, "n_candidates", owner=owner, lo=2)
        self.notation = check_choice(notation, "notation", NOTATIONS, owner=owner)
        _check_difficulty_column(self.name, difficulty_column)
        self.difficulty_column = difficulty_column
        super().__init__(data_files=data_files, path=path, hub_id=hub_id, revision=revision, cache_dir=cache_dir,
                         pair_template=pair_template, shuffle_seed=shuffle_seed, n_train=n_train, n_test=n_test,
                         test_seed=test_seed)
        _chess()  # fail at config time, not after the data loaded

    def choice_params(self) -> dict[str, Any]:
        return {**self.source_params(), "n_candidates": self.n_candidates, "notation": self.notation,
                "difficulty_column": self.difficulty_column, "chess": "v1"}

    # ------------------------------------------------------------------------------------ schema

    def _raw_columns(self, have: list[str]) -> list[str]:
        return _raw_columns(have, self.difficulty_column)

    def _check_columns(self, split: str, have: list[str]) -> None:
        _check_schema(self.name, split, have, self.difficulty_column)

    # ------------------------------------------------------------------------------------ rows

    def to_choice(self, row: Row, row_id: int) -> Choice | None:
        chess = _chess()
        found = puzzle(row)
        if found is None:
            return None
        board, correct, (kind, history) = found
        if kind == "last":
            history = f"Last move: {history}"
        else:
            history = "Moves so far: " + (" ".join(history) if history else "(none)")
        others = sorted((m for m in board.legal_moves if m != correct), key=lambda m: m.uci())
        if len(others) < self.n_candidates - 1:
            return None
        rng = np.random.default_rng(np.random.SeedSequence([self.shuffle_seed, row_id, _ALT_SALT]))
        picked = [others[i] for i in sorted(rng.choice(len(others), self.n_candidates - 1, replace=False))]
        side = "White" if board.turn == chess.WHITE else "Black"
        prompt = f"Chess position (FEN): {board.fen()}\n{history}\n{side} to move. Best move:"
        cands = tuple(move_text(board, m, self.notation) for m in [correct, *picked])
        return Choice(prompt, cands, 0, _rating(row, _default_difficulty(list(row), self.difficulty_column)))


# ------------------------------------------------------------------------------------ EleutherAI/w2s's binary form

#: EleutherAI/w2s's ``LICHESS_N_TEST``: its test pool is 5,000 rows drawn from the one hub split.
BINARY_N_TEST = 5000
#: The reference's engine search: ``chess.engine.Limit(depth=3)``, two principal variations.
ENGINE_DEPTH = 3
ENGINE_LINES = 2


def _pick_binary(row: Row, rng: random.Random):
    """The reference's draws, in its order: the coin, then ``rng.shuffle([puzzle move, alternative])`` (one
    ``_randbelow(2)`` whatever the moves are, so a shuffle of ``[0, 1]`` consumes the generator the same way)."""
    label = int(rng.random() < 0.5)
    order = [0, 1]
    rng.shuffle(order)
    return label, tuple(order)


def binary_text(previous: str, target: str, alternative: str, label: int, order: tuple[int, int]) -> str:
    """EleutherAI/w2s's ``format_lichess`` text from its parts: ``order`` places ``[target, alternative]``, and the
    answer shown is the target's position when ``label`` is 1, the other one when it is 0."""
    pair = (target, alternative)
    choices = [pair[order[0]], pair[order[1]]]
    correct = order.index(0)
    response = correct if label else 1 - correct
    return (f"Find the best move. Previous moves:\n{previous}\n"
            f"\n1) {choices[0]}\n2) {choices[1]}\nA: {response + 1}")


def _not_rendered(row: Row, label: int, extra: Any) -> str:  # pragma: no cover - LichessPuzzlesBinary renders
    raise NotImplementedError("lichess_puzzles_binary renders its rows itself")


BINARY_RECIPE = Recipe(
    "lichess_puzzles_binary", "EleutherAI/lichess-puzzles", ("train",), None, ("ctx", "target"), _not_rendered,
    pick=_pick_binary, source=ELEUTHER, balance=True, default_n_test=BINARY_N_TEST,
    summary="chess puzzles, EleutherAI/w2s's binary form: previous moves, the puzzle's move and one alternative "
            "shuffled, and an answer that is right or wrong")


class LichessPuzzlesBinary(RecipeDataset):
    """Chess puzzles as EleutherAI/w2s's binary task (its ``chess`` branch): the previous moves, the puzzle's move
    and one alternative in shuffled order, and an answer shown right (label 1) or wrong (label 0).

    :param engine: a UCI engine executable (e.g. ``/usr/games/stockfish``): the alternative is then, as in the
        reference, the first move of the engine's two best lines at ``engine_depth`` that is not the puzzle's move.
        Default (none): a legal move other than the puzzle's, drawn with ``(format_seed, row id)``.
    :param engine_depth: the engine's search depth (the reference's: 3).
    :param difficulty_column: raw column of the difficulty (default ``Rating``, else ``rating`` when the source
        has one: the Lichess puzzle CSV; the hub copy has no rating).
    :param data_files: local files in either raw schema (``ctx``/``target`` as EleutherAI/lichess-puzzles, or the
        Lichess puzzle CSV's ``FEN``/``Moves``, whose "previous moves" are then the position and the last move).
    :param format_seed/balance/max_ctx/tokenizer/path/hub_id/revision/cache_dir/n_train/n_test/test_seed: as every
        named recipe (``balance`` defaults to true and ``n_test`` to 5,000 drawn from the one ``train`` split, as
        the reference).
    """

    recipe = BINARY_RECIPE
    name = BINARY_RECIPE.name

    def __init__(self, engine: str | None = None, engine_depth: int = ENGINE_DEPTH,
                 difficulty_column: str | None = None, *, data_files: Any = None, path: str | None = None,
                 hub_id: str | None = None, revision: str | None = None, cache_dir: str | None = None,
                 format_seed: int = 0, balance: bool | None = None, max_ctx: int | None = None,
                 tokenizer: str | None = None, n_train: int | None = None, n_test: int | None = None,
                 test_seed: int = 0):
        super().__init__(data_files=data_files, path=path, hub_id=hub_id, revision=revision, cache_dir=cache_dir,
                         format_seed=format_seed, balance=balance, max_ctx=max_ctx, tokenizer=tokenizer,
                         n_train=n_train, n_test=n_test, test_seed=test_seed)
        owner = f"dataset {self.name!r}"
        self.engine = check_path(engine, "engine", owner=owner, optional=True, what="the path of a UCI engine")
        self.engine_depth = check_int(engine_depth, "engine_depth", owner=owner, lo=1)
        self.difficulty_column = _check_difficulty_column(self.name, difficulty_column)
        r = self.recipe
        # the recipe's source, reading either raw schema
        self.source = HubTables(self.name, hub=r.hub_id, config=r.config, splits=r.splits,
                                train_splits=list(r.train_splits), columns=list(r.columns), data_files=data_files,
                                path=path, hub_id=hub_id, revision=revision, default_revision=r.revision,
                                cache_dir=cache_dir, check=self._check_columns)
        self._rendered: dict[int, str | None] = {}
        _chess()  # fail at config time, not after the data loaded

    def params(self) -> dict[str, Any]:
        return {**super().params(), "engine": self.engine, "engine_depth": self.engine_depth if self.engine else None,
                "difficulty_column": self.difficulty_column, "chess": "binary-v1"}

    def _check_columns(self, split: str, have: list[str]) -> None:
        _check_schema(self.name, split, have, self.difficulty_column)

    def _columns(self, split: str) -> list[str]:
        return _raw_columns(list(self.source.open()[split].column_names), self.difficulty_column)

    # ------------------------------------------------------------------------------------ rows

    def _alternative(self, board, correct, row_id: int, engine):
        if engine is not None:
            chess = _chess()
            infos = engine.analyse(board, chess.engine.Limit(depth=self.engine_depth), multipv=ENGINE_LINES)
            top = [info["pv"][0] for info in infos if info.get("pv")]
            return next((m for m in top if m != correct), None)
        others = sorted((m for m in board.legal_moves if m != correct), key=lambda m: m.uci())
        if not others:
            return None
        rng = np.random.default_rng(np.random.SeedSequence([self.format_seed, row_id, _ALT_SALT]))
        return others[int(rng.integers(len(others)))]

    def _render(self, row: Row, row_id: int, outcome, engine) -> str | None:
        found = puzzle(row)
        if found is None:
            return None
        board, correct, (kind, history) = found
        alternative = self._alternative(board, correct, row_id, engine)
        if alternative is None:
            return None
        if kind == "last":
            previous = f"Position (FEN): {board.fen()}\nLast move: {history}"
            target = board.san(correct)
        else:
            previous = row["ctx"]  # the game so far, as the hub has it
            target = str(row["target"]).strip()
        label, order = outcome
        return binary_text(previous, target, board.san(alternative), label, order)

    def _open_engine(self):
        if self.engine is None:
            return None
        import chess.engine

        if shutil.which(self.engine) is None:  # checked when the rows load: a config validates on any machine
            raise DataError(f"dataset {self.name!r}: engine {self.engine!r} is not an executable (install a UCI "
                            f"engine, e.g. apt-get install stockfish, and give its path)")
        try:
            return chess.engine.SimpleEngine.popen_uci(self.engine)
        except (OSError, chess.engine.EngineError) as exc:
            raise DataError(f"dataset {self.name!r}: engine {self.engine!r} did not start: {exc}") from None

    def _render_rows(self, rows: np.ndarray) -> list[str | None]:
        """The texts of ``rows`` (``None`` where a row is unusable), rendering each row once."""
        rows = np.asarray(rows, dtype=np.int64)
        todo = np.array([r for r in rows if int(r) not in self._rendered], dtype=np.int64)
        if len(todo):
            outcomes = self._outcomes(todo)
            engine = self._open_engine()
            try:
                for split, pos, local in self.source.groups(todo):
                    cols = self._columns(split)
                    for s in range(0, len(pos), READ_BLOCK):
                        raw = self.source.read(split, local[s:s + READ_BLOCK], cols)
                        for p, row in zip(pos[s:s + READ_BLOCK], raw):
                            self._rendered[int(todo[p])] = self._render(row, int(todo[p]), outcomes[p], engine)
            finally:
                if engine is not None:
                    engine.quit()
        return [self._rendered[int(r)] for r in rows]

    # ------------------------------------------------------------------------------- RecipeDataset hooks

    def _keep_rows(self, rows: np.ndarray) -> np.ndarray:
        texts = self._render_rows(rows)
        keep = np.array([t is not None for t in texts], dtype=bool)
        if self.max_ctx is not None and keep.any():
            idx = np.flatnonzero(keep)
            keep[idx] = self._lengths([texts[i] for i in idx]) < self.max_ctx
        return keep

    def _format(self, rows: np.ndarray, outcomes: list) -> list[str]:
        texts = self._render_rows(rows)
        bad = [int(r) for r, t in zip(rows, texts) if t is None]
        if bad:  # pragma: no cover - _keep_rows drops them first
            raise DataError(f"dataset {self.name!r}: row {bad[0]} cannot be formatted")
        return texts  # type: ignore[return-value]

    def _row_difficulty(self, rows: np.ndarray) -> list[float | None] | None:
        rows = np.asarray(rows, dtype=np.int64)
        out: list[float | None] = [None] * len(rows)
        found = False
        for split, pos, local in self.source.groups(rows):
            have = list(self.source.open()[split].column_names)
            column = _default_difficulty(have, self.difficulty_column)
            if column is None:
                continue
            found = True
            for p, row in zip(pos, self.source.read(split, local, [column])):
                out[p] = _rating(row, column)
        return out if found else None
