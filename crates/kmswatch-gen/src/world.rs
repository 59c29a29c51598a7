//! The estate the corpus describes: accounts, subscriptions and projects with their time
//! zones, keys, vaults, workloads and people. Built once from the seed; `--scale` replicates
//! workloads and keys (a bigger estate) rather than making each one busier, so benign
//! traffic stays under every correlation threshold at any scale.

use crate::clock::{civil, DAY, HOUR};
use crate::rng::Rng;

/// A person of the company directory, known to all three clouds.
#[derive(Debug, Clone)]
pub struct Person {
    /// `alice.nguyen`.
    pub handle: String,
    /// `Alice Nguyen`.
    pub display: String,
    /// Key administrator (listed in `kms_admins`).
    pub admin: bool,
    /// In the identity inventory (false: departed, used by the departed-user scenario).
    pub active: bool,
    /// Entra ID object id.
    pub azure_oid: String,
}

impl Person {
    /// Corporate e-mail (AWS SSO session name, GCP principal, Entra UPN).
    pub fn email(&self) -> String {
        format!("{}@example.com", self.handle)
    }
}

/// A working calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// IANA zone name (zones without daylight saving, so the offset is exact).
    pub tz: &'static str,
    /// UTC offset in minutes.
    pub offset_min: i64,
    /// Public holidays, `YYYY-MM-DD`.
    pub holidays: Vec<String>,
}

/// Business hours start and end (local hour).
pub const BUSINESS_START_H: u32 = 9;
/// End of business hours (exclusive).
pub const BUSINESS_END_H: u32 = 18;

impl Calendar {
    /// Local epoch milliseconds.
    pub fn local(&self, utc_ms: i64) -> i64 {
        utc_ms + self.offset_min * 60_000
    }

    /// Traffic weight of the hour starting at `utc_ms`: a diurnal curve peaking early
    /// afternoon local time, lighter at weekends and on holidays. About 13.4 summed over a
    /// weekday.
    pub fn weight(&self, utc_ms: i64) -> f64 {
        let c = civil(self.local(utc_ms + HOUR / 2));
        let h = f64::from(c.h) + 0.5;
        let x = (h - 13.5) / 3.5;
        let mut w = 0.3 + (-(x * x)).exp();
        if c.wd >= 5 || self.is_holiday(utc_ms) {
            w *= 0.45;
        }
        w
    }

    /// True on a local public holiday.
    pub fn is_holiday(&self, utc_ms: i64) -> bool {
        let day = self.local(utc_ms).div_euclid(DAY);
        let d = crate::clock::date(day);
        self.holidays.contains(&d)
    }

    /// True inside business hours on a working day (no holiday).
    pub fn business(&self, utc_ms: i64) -> bool {
        let c = civil(self.local(utc_ms));
        c.wd < 5 && (BUSINESS_START_H..BUSINESS_END_H).contains(&c.h) && !self.is_holiday(utc_ms)
    }
}

/// Sum of [`Calendar::weight`] over a weekday.
pub const WEIGHT_PER_DAY: f64 = 13.4;

/// An AWS KMS key.
#[derive(Debug, Clone)]
pub struct AwsKey {
    /// Key id (UUID).
    pub id: String,
    /// Key ARN.
    pub arn: String,
    /// Alias without `alias/`.
    pub alias: String,
}

/// A human's principal in an AWS account.
#[derive(Debug, Clone)]
pub struct AwsHuman {
    /// Index into [`World::people`].
    pub person: usize,
    /// IAM Identity Center permission set (`KeyAdministrators`), or None for an IAM user.
    pub permission_set: Option<&'static str>,
}

/// An AWS account.
#[derive(Debug, Clone)]
pub struct AwsAccount {
    /// 12-digit id.
    pub id: String,
    /// Short name.
    pub name: &'static str,
    /// Calendar.
    pub cal: Calendar,
    /// Regions (trail delivers per region).
    pub regions: Vec<&'static str>,
    /// Symmetric keys per region (benign workloads use these).
    pub keys: Vec<Vec<AwsKey>>,
    /// Keys reserved for scenarios (never used by benign traffic), in the first region.
    pub scenario_keys: Vec<AwsKey>,
    /// Workload roles (`orders-api`, `orders-api-2` at scale 2, ...), with a session name.
    pub roles: Vec<(String, String)>,
    /// Hex suffix of the Identity Center roles.
    pub sso_suffix: String,
    /// People with access.
    pub humans: Vec<AwsHuman>,
}

impl AwsAccount {
    /// `arn:aws:sts::ACCT:assumed-role/AWSReservedSSO_SET_SUFFIX/EMAIL` or the IAM user ARN.
    pub fn human_uid(&self, w: &World, h: &AwsHuman) -> String {
        let p = &w.people[h.person];
        match h.permission_set {
            Some(set) => format!(
                "arn:aws:sts::{}:assumed-role/AWSReservedSSO_{}_{}/{}",
                self.id,
                set,
                self.sso_suffix,
                p.email()
            ),
            None => format!("arn:aws:iam::{}:user/{}", self.id, p.handle),
        }
    }
}

/// A Key Vault.
#[derive(Debug, Clone)]
pub struct Vault {
    /// Lowercase name.
    pub name: String,
    /// Resource group.
    pub rg: &'static str,
    /// Index into [`AzureTenant::subs`].
    pub sub: usize,
    /// Keys used by workloads: (name, current version).
    pub keys: Vec<(String, String)>,
    /// Secrets: (name, current version).
    pub secrets: Vec<(String, String)>,
}

impl Vault {
    /// `https://NAME.vault.azure.net`.
    pub fn uri(&self) -> String {
        format!("https://{}.vault.azure.net", self.name)
    }
}

/// A workload identity reading a vault.
#[derive(Debug, Clone)]
pub struct AzureApp {
    /// Display name (managed identity or app registration).
    pub name: String,
    /// Service principal object id.
    pub oid: String,
    /// Application id.
    pub appid: String,
    /// Managed identity (has `xms_mirid`).
    pub managed: bool,
    /// Vault index it uses.
    pub vault: usize,
    /// Indexes of the secrets it reads (at most four: never a many-secrets pattern).
    pub secrets: Vec<usize>,
    /// Index of the key it wraps/unwraps with.
    pub key: usize,
    /// `clientInfo`.
    pub client: &'static str,
}

/// The Azure tenant.
#[derive(Debug, Clone)]
pub struct AzureTenant {
    /// Tenant id.
    pub tenant: String,
    /// Subscriptions: (id, name).
    pub subs: Vec<(String, &'static str)>,
    /// Calendar (one company calendar for the tenant).
    pub cal: Calendar,
    /// Vaults.
    pub vaults: Vec<Vault>,
    /// Workloads.
    pub apps: Vec<AzureApp>,
}

/// A GCP project.
#[derive(Debug, Clone)]
pub struct GcpProject {
    /// Project id.
    pub id: String,
    /// Project number.
    pub number: String,
    /// Calendar.
    pub cal: Calendar,
    /// Location of its keys.
    pub location: &'static str,
    /// Key ring.
    pub ring: &'static str,
    /// Keys used by workloads.
    pub keys: Vec<String>,
    /// Workload service accounts (e-mails).
    pub sas: Vec<String>,
}

impl GcpProject {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub fn key_name(&self, key: &str) -> String {
        format!(
            "projects/{}/locations/{}/keyRings/{}/cryptoKeys/{}",
            self.id, self.location, self.ring, key
        )
    }

    /// The Cloud Storage service agent.
    pub fn gcs_agent(&self) -> String {
        format!(
            "service-{}@gs-project-accounts.iam.gserviceaccount.com",
            self.number
        )
    }
}

/// The whole estate plus the corpus window.
#[derive(Debug, Clone)]
pub struct World {
    /// Corpus start, epoch ms (00:00 UTC of the start date).
    pub start_ms: i64,
    /// Corpus end (exclusive).
    pub end_ms: i64,
    /// Benign volume factor.
    pub scale: f64,
    /// How many copies of each workload and key.
    pub reps: usize,
    /// KMS-heavy volume profile.
    pub kms_heavy: bool,
    /// The company directory.
    pub people: Vec<Person>,
    /// AWS accounts.
    pub aws: Vec<AwsAccount>,
    /// The external (attacker) AWS account.
    pub aws_external: String,
    /// Azure.
    pub azure: AzureTenant,
    /// GCP projects.
    pub gcp: Vec<GcpProject>,
}

const PEOPLE: &[(&str, &str, bool, bool)] = &[
    ("alice.nguyen", "Alice Nguyen", true, true),
    ("bob.martin", "Bob Martin", true, true),
    ("carol.diaz", "Carol Diaz", false, true),
    ("dave.okafor", "Dave Okafor", false, true),
    ("erin.tan", "Erin Tan", false, true),
    ("frank.li", "Frank Li", false, true),
    // Left the company; still has working credentials in the departed-user scenario.
    ("gina.ross", "Gina Ross", false, false),
];

fn reps_of(base: &str, reps: usize) -> impl Iterator<Item = String> + '_ {
    (1..=reps).map(move |i| {
        if i == 1 {
            base.to_string()
        } else {
            format!("{base}-{i}")
        }
    })
}

impl World {
    /// Build the estate for a seed.
    pub fn new(seed: u64, start_day: i64, days: u32, scale: f64, kms_heavy: bool) -> World {
        let mut r = Rng::new(seed, "world");
        let reps = scale.ceil().max(1.0) as usize;
        let people: Vec<Person> = PEOPLE
            .iter()
            .map(|&(h, d, admin, active)| Person {
                handle: h.into(),
                display: d.into(),
                admin,
                active,
                azure_oid: r.uuid(),
            })
            .collect();
        let hol = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let aws_defs: [(&str, &'static str, &'static str, i64, Vec<String>); 3] = [
            (
                "111122223333",
                "prod",
                "America/Phoenix",
                -420,
                hol(&[
                    "2026-01-01",
                    "2026-05-25",
                    "2026-07-03",
                    "2026-11-26",
                    "2026-12-25",
                ]),
            ),
            (
                "444455556666",
                "analytics",
                "Asia/Tokyo",
                540,
                hol(&["2026-01-01", "2026-03-20", "2026-04-29", "2026-05-05"]),
            ),
            (
                "555566667777",
                "shared-services",
                "UTC",
                0,
                hol(&["2026-01-01", "2026-12-25"]),
            ),
        ];
        let role_bases = [
            "orders-api",
            "payments-worker",
            "etl-job",
            "reporting",
            "ingest-lambda",
            "backup-runner",
        ];
        let aws = aws_defs
            .into_iter()
            .map(|(id, name, tz, off, holidays)| {
                let regions = vec!["us-east-1", "eu-west-1"];
                let mk = |r: &mut Rng, region: &str, alias: String| {
                    let kid = r.uuid();
                    AwsKey {
                        arn: format!("arn:aws:kms:{region}:{id}:key/{kid}"),
                        id: kid,
                        alias,
                    }
                };
                let keys = regions
                    .iter()
                    .map(|region| {
                        ["app-data", "orders", "backups", "ebs-default"]
                            .iter()
                            .flat_map(|b| reps_of(b, reps).collect::<Vec<_>>())
                            .map(|a| mk(&mut r, region, a))
                            .collect()
                    })
                    .collect();
                let scenario_keys = ["legacy-reports", "signing-release", "byok-archive"]
                    .iter()
                    .map(|a| mk(&mut r, "us-east-1", a.to_string()))
                    .collect();
                let roles = role_bases
                    .iter()
                    .flat_map(|b| reps_of(b, reps).collect::<Vec<_>>())
                    .map(|role| {
                        let s = if role.contains("lambda") {
                            role.clone()
                        } else {
                            format!("i-0{}", r.hex(16))
                        };
                        (role, s)
                    })
                    .collect();
                AwsAccount {
                    id: id.into(),
                    name,
                    cal: Calendar {
                        tz,
                        offset_min: off,
                        holidays,
                    },
                    regions,
                    keys,
                    scenario_keys,
                    roles,
                    sso_suffix: r.hex(16),
                    humans: vec![
                        AwsHuman {
                            person: 0,
                            permission_set: Some("KeyAdministrators"),
                        },
                        AwsHuman {
                            person: 1,
                            permission_set: None,
                        },
                        AwsHuman {
                            person: 2,
                            permission_set: Some("Developers"),
                        },
                        AwsHuman {
                            person: 3,
                            permission_set: Some("Developers"),
                        },
                        AwsHuman {
                            person: 4,
                            permission_set: None,
                        },
                    ],
                }
            })
            .collect();

        let subs = vec![
            ("5f0c7a3e-1b2d-4c6e-8f90-a1b2c3d4e5f6".to_string(), "prod"),
            ("7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".to_string(), "dev"),
        ];
        let vault_defs: [(&str, &'static str, usize); 3] = [
            ("kv-payments-prod", "rg-payments", 0),
            ("kv-platform-prod", "rg-platform", 0),
            ("kv-dev-shared", "rg-dev", 1),
        ];
        let mut vaults = Vec::new();
        for (name, rg, sub) in vault_defs {
            let keys = ["cmk-storage", "cmk-sql", "cmk-app"]
                .iter()
                .flat_map(|b| reps_of(b, reps).collect::<Vec<_>>())
                .map(|k| (k, r.hex(32)))
                .collect();
            let secrets = [
                "db-password",
                "api-token",
                "smtp-password",
                "storage-conn",
                "jwt-signing",
                "partner-api-key",
            ]
            .iter()
            .flat_map(|b| reps_of(b, reps).collect::<Vec<_>>())
            .map(|s| (s, r.hex(32)))
            .collect();
            vaults.push(Vault {
                name: name.into(),
                rg,
                sub,
                keys,
                secrets,
            });
        }
        let app_defs: [(&str, bool, &'static str); 5] = [
            (
                "id-orders-api",
                true,
                "azsdk-net-Security.KeyVault.Secrets/4.6.0 (.NET 8.0.4; Linux)",
            ),
            ("id-sql-cmk", true, "Microsoft.Sql/1.0"),
            (
                "app-billing-batch",
                false,
                "azsdk-python-keyvault-secrets/4.8.0 Python/3.11.8",
            ),
            (
                "id-aks-csi",
                true,
                "azsdk-go-azsecrets/v1.1.0 (go1.22.1; linux)",
            ),
            (
                "app-reporting",
                false,
                "azsdk-java-azure-security-keyvault-secrets/4.8.0 (17.0.10; Linux)",
            ),
        ];
        let mut apps = Vec::new();
        for (vi, v) in vaults.iter().enumerate() {
            for (ai, (name, managed, client)) in app_defs.iter().enumerate() {
                for rep in 0..reps {
                    let n = if rep == 0 {
                        format!("{name}-{}", v.name.trim_start_matches("kv-"))
                    } else {
                        format!("{name}-{}-{}", v.name.trim_start_matches("kv-"), rep + 1)
                    };
                    let ns = v.secrets.len().max(1);
                    let first = (ai * 2 + rep * 3) % ns;
                    let secrets = (0..3).map(|k| (first + k) % ns).collect();
                    apps.push(AzureApp {
                        name: n,
                        oid: r.uuid(),
                        appid: r.uuid(),
                        managed: *managed,
                        vault: vi,
                        secrets,
                        key: (ai + rep) % v.keys.len().max(1),
                        client,
                    });
                }
            }
        }
        let azure = AzureTenant {
            tenant: "9e8d7c6b-5a49-4838-a726-1f0e0d0c0b0a".into(),
            subs,
            cal: Calendar {
                tz: "Africa/Johannesburg",
                offset_min: 120,
                holidays: hol(&[
                    "2026-01-01",
                    "2026-03-21",
                    "2026-04-03",
                    "2026-04-27",
                    "2026-12-25",
                ]),
            },
            vaults,
            apps,
        };

        let gcp_defs: [(&str, &str, &'static str); 2] = [
            ("kmswatch-prod", "123456789012", "us-east1"),
            ("kmswatch-data", "210987654321", "europe-west1"),
        ];
        let gcp = gcp_defs
            .iter()
            .map(|&(id, number, location)| GcpProject {
                id: id.into(),
                number: number.into(),
                cal: Calendar {
                    tz: "Asia/Singapore",
                    offset_min: 480,
                    holidays: hol(&["2026-01-01", "2026-02-17", "2026-05-01", "2026-08-10"]),
                },
                location,
                ring: "app-ring",
                keys: ["bucket-cmek", "app-key", "bq-cmek"]
                    .iter()
                    .flat_map(|b| reps_of(b, reps).collect::<Vec<_>>())
                    .collect(),
                sas: ["orders-api", "etl-runner", "release-bot", "reporting"]
                    .iter()
                    .flat_map(|b| reps_of(b, reps).collect::<Vec<_>>())
                    .map(|s| format!("{s}@{id}.iam.gserviceaccount.com"))
                    .collect(),
            })
            .collect();

        World {
            start_ms: start_day * DAY,
            end_ms: (start_day + i64::from(days)) * DAY,
            scale,
            reps,
            kms_heavy,
            people,
            aws,
            aws_external: "999988887777".into(),
            azure,
            gcp,
        }
    }

    /// Expected events in the hour starting at `t` for a stream of `per_day` events per
    /// weekday at scale 1.
    pub fn hourly(&self, cal: &Calendar, t: i64, per_day: f64) -> f64 {
        per_day * self.scale * cal.weight(t) / WEIGHT_PER_DAY
    }

    /// Benign non-key-management volume factor.
    pub fn non_kms(&self) -> f64 {
        if self.kms_heavy {
            0.05
        } else {
            1.0
        }
    }

    /// The instant `hh:mm` local time on corpus day `day` (wrapped into the corpus), such
    /// that `dur_ms` more still fits in it.
    pub fn at_local(&self, cal: &Calendar, day: u32, hh: u32, mm: u32, dur_ms: i64) -> i64 {
        let ndays = ((self.end_ms - self.start_ms) / DAY).max(1);
        let d = i64::from(day) % ndays;
        let mut t = self.start_ms + d * DAY + i64::from(hh) * HOUR + i64::from(mm) * 60_000
            - cal.offset_min * 60_000;
        while t < self.start_ms {
            t += DAY;
        }
        while t + dur_ms >= self.end_ms && t - DAY >= self.start_ms {
            t -= DAY;
        }
        t.min(self.end_ms - dur_ms - 60_000).max(self.start_ms)
    }
}
