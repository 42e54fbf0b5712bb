"""Simulated systems: services with replicas on nodes, and the calls between them.

Presets shaped like Online Boutique (11 services, AIOps-2022 naming `cartservice-2`,
`node-6`), like Train-Ticket (about 40 services, Nezha-style pod names with ReplicaSet
hashes) and generated systems of N services (a call DAG with fan-out and shared databases
and caches). Everything is derived from a seeded random generator: same seed, same system.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Call:
    callee: str
    operation: str
    probability: float = 1.0
    parallel: bool = False  # issued together with the previous parallel call


@dataclass
class Service:
    name: str
    kind: str  # frontend | app | db | cache
    replicas: int
    base_ms: float  # median own processing time per request
    operation: str
    calls: list[Call] = field(default_factory=list)


@dataclass
class System:
    name: str
    entry: str
    services: dict[str, Service]
    pods: dict[str, list[str]]  # service -> pod names
    node_of: dict[str, str]  # pod -> node

    @property
    def nodes(self) -> list[str]:
        return sorted(set(self.node_of.values()))

    def service_of(self, pod: str) -> str:
        return next(s for s, pods in self.pods.items() if pod in pods)

    def callers(self, service: str) -> list[str]:
        return sorted(
            s.name for s in self.services.values() if any(c.callee == service for c in s.calls)
        )


def _place(
    services: dict[str, Service], node_count: int, rng: random.Random, naming: str
) -> tuple[dict[str, list[str]], dict[str, str]]:
    pods: dict[str, list[str]] = {}
    node_of: dict[str, str] = {}
    nodes = [f"node-{i + 1}" for i in range(node_count)]
    for name, service in services.items():
        if naming == "nezha":
            replica_set = "".join(rng.choice("0123456789abcdef") for _ in range(10))
            names = [
                f"{name}-{replica_set}-{''.join(rng.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))}"
                for _ in range(service.replicas)
            ]
        else:
            names = [f"{name}-{i}" for i in range(service.replicas)]
        pods[name] = names
        offset = rng.randrange(node_count)
        for index, pod in enumerate(names):  # replicas spread over different nodes
            node_of[pod] = nodes[(offset + index) % node_count]
    return pods, node_of


def boutique(seed: int = 0) -> System:
    """Online-Boutique-like: 11 services, three replicas of most, six nodes."""
    rng = random.Random(seed)
    hs = "hipstershop"
    spec = {
        "frontend": (
            "frontend",
            3,
            2.0,
            f"{hs}.Frontend/Recv.",
            [
                Call("productcatalogservice", f"{hs}.ProductCatalogService/GetProduct", 0.9, True),
                Call("currencyservice", f"{hs}.CurrencyService/Convert", 0.8, True),
                Call("cartservice", f"{hs}.CartService/GetCart", 0.7),
                Call(
                    "recommendationservice", f"{hs}.RecommendationService/ListRecommendations", 0.6
                ),
                Call("adservice", f"{hs}.AdService/GetAds", 0.5),
                Call("checkoutservice", f"{hs}.CheckoutService/PlaceOrder", 0.15),
            ],
        ),
        "productcatalogservice": ("app", 3, 3.0, f"{hs}.ProductCatalogService/GetProduct", []),
        "currencyservice": ("app", 2, 1.5, f"{hs}.CurrencyService/Convert", []),
        "cartservice": (
            "app",
            3,
            3.0,
            f"{hs}.CartService/GetCart",
            [Call("redis-cart", "HGET", 1.0)],
        ),
        "redis-cart": ("cache", 1, 0.5, "HGET", []),
        "recommendationservice": (
            "app",
            2,
            4.0,
            f"{hs}.RecommendationService/ListRecommendations",
            [Call("productcatalogservice", f"{hs}.ProductCatalogService/ListProducts", 1.0)],
        ),
        "adservice": ("app", 2, 2.0, f"{hs}.AdService/GetAds", []),
        "checkoutservice": (
            "app",
            2,
            5.0,
            f"{hs}.CheckoutService/PlaceOrder",
            [
                Call("cartservice", f"{hs}.CartService/GetCart", 1.0),
                Call("productcatalogservice", f"{hs}.ProductCatalogService/GetProduct", 1.0),
                Call("shippingservice", f"{hs}.ShippingService/GetQuote", 1.0),
                Call("paymentservice", f"{hs}.PaymentService/Charge", 1.0),
                Call("emailservice", f"{hs}.EmailService/SendOrderConfirmation", 1.0),
            ],
        ),
        "shippingservice": ("app", 2, 2.0, f"{hs}.ShippingService/GetQuote", []),
        "paymentservice": ("app", 2, 3.0, f"{hs}.PaymentService/Charge", []),
        "emailservice": ("app", 2, 4.0, f"{hs}.EmailService/SendOrderConfirmation", []),
    }
    services = {
        name: Service(name, kind, replicas, base, op, list(calls))
        for name, (kind, replicas, base, op, calls) in spec.items()
    }
    pods, node_of = _place(services, 6, rng, "aiops")
    return System("boutique", "frontend", services, pods, node_of)


_TT_NAMES = [
    "ts-gateway-service",
    "ts-travel-service",
    "ts-travel2-service",
    "ts-preserve-service",
    "ts-preserve-other-service",
    "ts-order-service",
    "ts-order-other-service",
    "ts-basic-service",
    "ts-station-service",
    "ts-train-service",
    "ts-route-service",
    "ts-price-service",
    "ts-seat-service",
    "ts-config-service",
    "ts-contacts-service",
    "ts-user-service",
    "ts-auth-service",
    "ts-verification-code-service",
    "ts-food-service",
    "ts-station-food-service",
    "ts-train-food-service",
    "ts-food-delivery-service",
    "ts-assurance-service",
    "ts-security-service",
    "ts-consign-service",
    "ts-consign-price-service",
    "ts-inside-payment-service",
    "ts-payment-service",
    "ts-cancel-service",
    "ts-rebook-service",
    "ts-execute-service",
    "ts-notification-service",
    "ts-delivery-service",
    "ts-route-plan-service",
    "ts-travel-plan-service",
    "ts-ticket-office-service",
    "ts-news-service",
    "ts-voucher-service",
    "ts-admin-order-service",
    "ts-admin-route-service",
]


def trainticket(seed: int = 0) -> System:
    """Train-Ticket-like: 40 services behind a gateway, one pod each (Nezha naming), 9 nodes."""
    rng = random.Random(seed)
    names = _TT_NAMES
    services: dict[str, Service] = {}
    for index, name in enumerate(names):
        kind = "frontend" if index == 0 else "app"
        short = name.removeprefix("ts-").removesuffix("-service")
        services[name] = Service(name, kind, 1, rng.uniform(2, 12), f"/api/v1/{short}/query")
    layers = [names[:1], names[1:8], names[8:24], names[24:]]
    for upper, lower in itertools.pairwise(layers):
        for name in upper:
            for callee in rng.sample(lower, k=min(len(lower), rng.randint(2, 4))):
                services[name].calls.append(
                    Call(callee, services[callee].operation, rng.uniform(0.5, 1))
                )
    for db in ("ts-mysql", "ts-redis"):
        services[db] = Service(
            db,
            "db" if db.endswith("mysql") else "cache",
            1,
            1.0,
            "SELECT ts.table" if db.endswith("mysql") else "GET",
        )
    for name in names[8:]:
        services[name].calls.append(Call(rng.choice(["ts-mysql", "ts-redis"]), "query", 0.8))
    pods, node_of = _place(services, 9, rng, "nezha")
    return System("trainticket", names[0], services, pods, node_of)


def generated(n_services: int, seed: int = 0) -> System:
    """A generated system: a layered call DAG with fan-out 1-4, shared DBs and caches, replicas."""
    if n_services < 4:
        raise ValueError("a generated system needs at least 4 services")
    rng = random.Random(seed)
    n_backends = max(2, n_services // 20)
    apps = [f"svc-{i:04d}" for i in range(n_services - n_backends)]
    backends = [f"{'db' if i % 2 == 0 else 'cache'}-{i:03d}" for i in range(n_backends)]
    services: dict[str, Service] = {}
    for index, name in enumerate(apps):
        services[name] = Service(
            name,
            "frontend" if index == 0 else "app",
            rng.choice([1, 1, 2, 3]),
            rng.uniform(1, 8),
            f"{name}/handle",
        )
    for name in backends:
        services[name] = Service(
            name, "db" if name.startswith("db") else "cache", 1, rng.uniform(0.3, 2), "query"
        )
    # each app calls 1-4 apps with a larger index (a DAG) and sometimes a shared backend
    for index, name in enumerate(apps):
        later = apps[index + 1 : index + 1 + max(4, n_services // 10)]
        for callee in rng.sample(later, k=min(len(later), rng.randint(1, 4) if later else 0)):
            services[name].calls.append(
                Call(callee, services[callee].operation, rng.uniform(0.3, 1), rng.random() < 0.3)
            )
        if rng.random() < 0.4:
            services[name].calls.append(Call(rng.choice(backends), "query", 0.9))
    node_count = max(3, n_services // 8)
    pods, node_of = _place(services, node_count, rng, "aiops")
    return System(f"generated-{n_services}", apps[0], services, pods, node_of)


def make_system(spec: str, seed: int = 0) -> System:
    """`boutique`, `trainticket` or `generated:N`."""
    if spec == "boutique":
        return boutique(seed)
    if spec == "trainticket":
        return trainticket(seed)
    if spec.startswith("generated:"):
        size = spec.split(":", 1)[1]
        if not size.strip().isdigit():
            raise ValueError(
                f"--system {spec}: the size after 'generated:' must be a whole number of "
                "services, e.g. generated:40"
            )
        return generated(int(size), seed)
    raise ValueError(f"unknown system '{spec}': use boutique, trainticket or generated:N")
