# One image for the four services and the `sais` CLI. Multi-stage, slim, non-root, read-only-root friendly.
FROM python:3.11-slim-bookworm AS build
# Extra CA certificates (PEM) for a TLS-intercepting proxy between the build and PyPI, as on many
# corporate networks: `make images` passes the ones the host trusts. Used in this stage only; the
# image that runs is built from a clean base and never holds them.
ARG EXTRA_CA_CERTS=""
WORKDIR /app
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
COPY pyproject.toml uv.lock ./
COPY shared ./shared
COPY services ./services
COPY src ./src
RUN set -e; bundle=/etc/ssl/certs/ca-certificates.crt; \
    if [ -n "$EXTRA_CA_CERTS" ]; then bundle=/tmp/ca-bundle.pem; \
      { cat /etc/ssl/certs/ca-certificates.crt; printf '%s\n' "$EXTRA_CA_CERTS"; } > "$bundle"; fi; \
    export SSL_CERT_FILE="$bundle" PIP_CERT="$bundle"; \
    pip install --no-cache-dir uv==0.13.9; \
    uv sync --frozen --all-packages --no-dev --no-editable; \
    rm -f /tmp/ca-bundle.pem

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends openssl && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin sais \
    && mkdir -p /pki /exports && chown 10001:10001 /pki /exports && chmod 700 /pki /exports
# /pki and /exports belong to the service user: a fresh named volume mounted there takes the ownership of
# the image's directory (Docker copies it on first mount), so pki-init and `sais … --out` can write.
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001
WORKDIR /exports
ENTRYPOINT ["python", "-m"]
CMD ["sais_eligibility"]
