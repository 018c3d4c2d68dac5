"""Tests for the deployment backends."""
