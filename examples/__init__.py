"""Example consumers built on `publisher.consumer`: an ERP connector and a search indexer."""
