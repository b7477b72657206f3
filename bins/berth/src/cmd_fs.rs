//! `berth cp`, `diff`, `export`, `commit`: the container filesystem commands (docs/fs.md).
//!
//! Thin over `berth_engine::fsops`. Exit codes follow the Docker CLI for these commands:
//! 0 on success, 1 when the command fails (unknown container, missing path, ...), 2 for usage
//! errors (from clap).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use berth_engine::exec::chain;
use berth_engine::fsops::{CpEndpoint, CpOptions, FsError};
use berth_engine::Engine;
use berth_image::commit::CommitOptions;
use berth_image::Reference;

#[derive(clap::Subcommand)]
pub enum FsCmd {
    /// Copy files between a container and the host (`-` for a tar stream).
    Cp(CpArgs),
    /// Show the files a container changed (A added, C changed, D deleted).
    Diff { container: String },
    /// Write a container's root filesystem as a tar archive.
    Export {
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// Create a new image from a container's changes.
    Commit(CommitArgs),
}

#[derive(clap::Args)]
pub struct CpArgs {
    /// Archive mode: keep the uid/gid of the copied files.
    #[arg(short, long)]
    archive: bool,
    /// Follow a symlink given as the source.
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Accepted for Docker compatibility (Berth prints no progress).
    #[arg(short, long)]
    quiet: bool,
    /// `CONTAINER:PATH`, a host path, or `-`.
    #[arg(allow_hyphen_values = true)]
    src: String,
    /// `CONTAINER:PATH`, a host path, or `-`.
    #[arg(allow_hyphen_values = true)]
    dest: String,
}

#[derive(clap::Args)]
pub struct CommitArgs {
    /// Author (e.g. "Jane Doe <jane@example.com>").
    #[arg(short, long)]
    author: Option<String>,
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Dockerfile instruction to apply: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE.
    #[arg(short, long)]
    change: Vec<String>,
    /// Pause a running container during the commit.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pause: bool,
    container: String,
    /// `REPOSITORY[:TAG]` for the new image.
    reference: Option<String>,
}

/// Runs a filesystem command and exits with Docker's codes; never returns.
pub fn dispatch(root: &Path, cmd: FsCmd) -> ! {
    let code = match run(root, cmd) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth: {}", chain(e.as_ref()));
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn run(root: &Path, cmd: FsCmd) -> Result<(), Box<dyn std::error::Error>> {
    let e = Engine::open(root)?;
    match cmd {
        FsCmd::Cp(a) => {
            let (src, dest) = (CpEndpoint::parse(&a.src), CpEndpoint::parse(&a.dest));
            let usage = match (&src, &dest) {
                (CpEndpoint::Container { .. }, CpEndpoint::Container { .. }) => {
                    Some("copying between containers is not supported")
                }
                (CpEndpoint::Container { .. }, _) | (_, CpEndpoint::Container { .. }) => None,
                _ => Some("must specify at least one container source"),
            };
            if let Some(msg) = usage {
                return Err(msg.into());
            }
            let opts = CpOptions {
                archive: a.archive,
                follow: a.follow_link,
            };
            if dest == CpEndpoint::Stream && std::io::stdout().is_terminal() {
                return Err("cannot write a tar archive to a terminal; redirect the output".into());
            }
            let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
            e.copy(&src, &dest, opts, &mut stdin, &mut stdout)?;
            Ok(())
        }
        FsCmd::Diff { container } => {
            let mut out = std::io::stdout().lock();
            for c in e.diff(&container)? {
                writeln!(out, "{} {}", c.kind, c.path)?;
            }
            Ok(())
        }
        FsCmd::Export { output, container } => match output {
            Some(path) => {
                // The container must exist before a file is created for it.
                e.find(&container)?;
                let f = std::fs::File::create(&path)
                    .map_err(|err| format!("creating {}: {err}", path.display()))?;
                let mut w = std::io::BufWriter::new(f);
                let res = e.export(&container, &mut w).and_then(|()| {
                    w.flush().map_err(FsError::WriteArchive)?;
                    Ok(())
                });
                if res.is_err() {
                    let _ = std::fs::remove_file(&path);
                }
                Ok(res?)
            }
            None => {
                if std::io::stdout().is_terminal() {
                    return Err("cowardly refusing to save to a terminal. \
                                Use the -o flag or redirect"
                        .into());
                }
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                e.export(&container, &mut out)?;
                out.flush()?;
                Ok(())
            }
        },
        FsCmd::Commit(a) => {
            let reference = match &a.reference {
                Some(r) => Some(
                    r.parse::<Reference>()
                        .map_err(|_| FsError::Reference(r.clone()))?,
                ),
                None => None,
            };
            let opts = CommitOptions {
                changes: a.change,
                author: a.author,
                comment: a.message,
                container: String::new(),
                reference,
            };
            let img = e.commit(&a.container, &opts, a.pause)?;
            println!("{}", img.id);
            Ok(())
        }
    }
}
