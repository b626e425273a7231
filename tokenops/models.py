"""The purge history, and the permissions of the admin's "Token hygiene" page."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _


class PurgeRun(models.Model):
    """One purge, whoever started it: what it was asked, what it found, how it ended."""

    class Trigger(models.TextChoices):
        COMMAND = "command", _("command")
        TASK = "task", _("Celery task")
        ADMIN = "admin", _("admin")

    class Outcome(models.TextChoices):
        RUNNING = "running", _("running")
        OK = "ok", _("ok")
        FAILED = "failed", _("failed")
        INTERRUPTED = "interrupted", _("interrupted")
        # Another purge held the database's purge lock: this one did nothing.
        SKIPPED = "skipped", _("skipped")

    started_at = models.DateTimeField(_("started"), db_index=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # Last sign of life of a running purge: a row "running" long after it was killed.
    heartbeat_at = models.DateTimeField(_("last sign of life"))
    trigger = models.CharField(_("started by way of"), max_length=16, choices=Trigger.choices)
    started_by = models.CharField(_("started by"), max_length=150, blank=True)
    dry_run = models.BooleanField(_("dry run"), default=False)
    database = models.CharField(_("database"), max_length=100)
    older_than = models.DurationField(_("older than"), null=True, blank=True)
    batch_size = models.PositiveIntegerField(_("batch size"), null=True, blank=True)
    cutoff = models.DateTimeField(_("cutoff"), null=True, blank=True)
    cutoff_reason = models.CharField(_("cutoff set by"), max_length=32, blank=True)
    outstanding_before = models.PositiveBigIntegerField(_("outstanding before"), null=True)
    blacklisted_before = models.PositiveBigIntegerField(_("blacklisted before"), null=True)
    outstanding_purgeable = models.PositiveBigIntegerField(_("outstanding purgeable"), null=True)
    blacklisted_purgeable = models.PositiveBigIntegerField(_("blacklisted purgeable"), null=True)
    outstanding_deleted = models.PositiveBigIntegerField(_("outstanding deleted"), null=True)
    blacklisted_deleted = models.PositiveBigIntegerField(_("blacklisted deleted"), null=True)
    outstanding_after = models.PositiveBigIntegerField(_("outstanding after"), null=True)
    blacklisted_after = models.PositiveBigIntegerField(_("blacklisted after"), null=True)
    outcome = models.CharField(
        _("outcome"),
        max_length=16,
        choices=Outcome.choices,
        default=Outcome.RUNNING,
        db_index=True,
    )
    error = models.TextField(_("error"), blank=True)
    # False when the run left purgeable rows (its time budget ran out, it was interrupted or
    # failed): the next run continues.
    complete = models.BooleanField(_("complete"), default=True)
    # Where a complete run left the outstanding table (one snapshot): its highest id and
    # earliest expiry. token_report --check then asks only the rows added since.
    last_token_id = models.BigIntegerField(_("last token id"), null=True, blank=True)
    next_expiry = models.DateTimeField(_("next expiry"), null=True, blank=True)

    class Meta:
        verbose_name = _("purge run")
        verbose_name_plural = _("purge runs")
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M} {self.get_outcome_display()}"

    def outcome_at(self, stale_before: datetime) -> str:
        """The outcome as it really is: a "running" row silent since ``stale_before`` died."""
        if self.outcome == self.Outcome.RUNNING and self.heartbeat_at < stale_before:
            return self.Outcome.INTERRUPTED
        return self.outcome


class SweepTally(models.Model):
    """What in-app sweeps deleted, one row per hour: sweeps write no history row each.

    ``hour`` counts hours since the Unix epoch (UTC), so no time zone setting matters;
    hour 0 holds the folded totals of buckets too old to keep, so the sums over all rows
    only ever grow (the metrics' counters).
    """

    hour = models.BigIntegerField(_("hour"), unique=True)
    outstanding_deleted = models.PositiveBigIntegerField(_("outstanding deleted"), default=0)
    blacklisted_deleted = models.PositiveBigIntegerField(_("blacklisted deleted"), default=0)
    # Sweeps that deleted at least one row (a sweep that found nothing writes nothing).
    sweeps = models.PositiveBigIntegerField(_("sweeps"), default=0)

    class Meta:
        verbose_name = _("sweep tally")
        verbose_name_plural = _("sweep tallies")

    def __str__(self) -> str:
        return f"{self.hour}: {self.outstanding_deleted}"


class TokenHygiene(models.Model):
    """No table: it carries the page's permissions and its entry in the admin index."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_token_hygiene", _("Can view the token hygiene page")),
            ("run_purge", _("Can purge tokens from the admin")),
        ]
        verbose_name = _("token hygiene")
        verbose_name_plural = _("token hygiene")

    def __str__(self) -> str:
        return str(self._meta.verbose_name)
