"""Elasticsearch: the distributed store Furui reads events from and writes incidents to."""
